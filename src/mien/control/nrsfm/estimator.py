"""The backbone R(q) (Eq. 4.14 = P-III Eq. 2) and the :class:`RankOneNRSfM` estimator."""

from __future__ import annotations

import numpy as np
import torch

from mien.control.nrsfm.factorise import (METRICS, _init_directions, fit_rank_one_als, fit_rank_one_gradient,
                                          metric_upgrade)
from mien.control.nrsfm.geometry import (DTYPE, Tensor, _tensor, camera_matrix, camera_rotation, centre,
                                         check_measurements, complete_rotation, euler_to_rotation,
                                         measurement_matrix, project_to_rotation, rotation_to_euler)
from mien.errors import ConfigError, DataError

METHODS = ("als", "gradient")


# ----------------------------------------------------------------------------- the backbone R(q)


def split_q(q: Tensor, K: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """q (... x (K + 8)) -> k (... x 3), theta (... x 3), alpha (... x K), t (... x 2) (Eq. 4.14)."""
    return q[..., :3], q[..., 3:6], q[..., 6:6 + K], q[..., 6 + K:8 + K]


def backbone(q: Tensor, B0: Tensor, bases: Tensor) -> Tensor:
    """R(q) = K [I_2 | 0] R(theta) [B_0 + sum_k alpha_k B_k] + t (x) 1_L^T (Eq. 4.14 = P-III Eq. 2),
    differentiable in q. q is ... x (K + 8), B0 3 x L, bases K x 3 x L; returns ... x L x 2
    (landmarks in the coordinates of the fitted data)."""
    K = bases.shape[0]
    if q.shape[-1] != K + 8:
        raise DataError(f"q has {q.shape[-1]} entries; this model has K={K} bases, so q needs K + 8 = {K + 8}")
    k, theta, alpha, t = split_q(q, K)
    B0, bases = B0.to(q.dtype), bases.to(q.dtype)
    shape = B0 + torch.einsum("...k,kcl->...cl", alpha, bases)  # ... x 3 x L
    M = camera_matrix(k) @ euler_to_rotation(theta)[..., :2, :]  # K [I|0] R(theta): ... x 2 x 3
    return (M @ shape + t[..., None]).transpose(-1, -2)


# ----------------------------------------------------------------------------- the estimator


class RankOneNRSfM:
    """Rank-one NRSfM (Brandt & Ackermann 2019) as used by Haas P-III §3.1, scikit-learn style.

    ``fit(W)`` takes W (2F x N, or F x N x 2 landmarks) and learns ``mean_shape_`` B_0 (3 x N),
    ``directions_`` D (3 x K, unit columns), ``b_`` (K x N, rows of dB), ``bases_`` B_k = d_k b_k^T
    (K x 3 x N), ``projections_`` M_f (F x 2 x 3), ``cameras_`` K_f (F x 2 x 2), ``rotations_``
    (F x 3 x 3), ``angles_`` theta_f (F x 3, radians), ``coefficients_`` alpha (F x K),
    ``translations_`` t_f (F x 2), ``q_`` (F x (K + 8)), ``singular_values_`` of the centred W,
    ``reprojection_error_`` (RMS over coordinates, units of W), ``n_iter_``.

    method: "als" (Eq. 4.13 by alternating least squares) or "gradient" (P-III Eq. 10 by Adam with
    penalty ``lam``, ``steps`` and ``lr``). metric: the Tomasi-Kanade upgrade (see
    :func:`metric_upgrade`). orient: "mean" turns the shapes so that theta = 0 is the mean rotation
    of the fitted frames (step 7 of the digest's Alg. B), "none" keeps the SVD's frame. front: index
    of a point that lies in front of the centroid in the mean pose (30, the nose tip, for iBUG
    faces); it resolves the depth reversal of orthographic SfM. The depth axis is r_3 = r_1 x r_2:
    for image coordinates (x right, y down, as ``landmarks2d``) it points away from the camera, so
    the front point is given a depth below the centroid's. init: "eig"
    (closed-form per-basis directions) or "random" (seeded unit vectors).
    """

    def __init__(self, n_bases: int = 12, method: str = "als", metric: str = "scaled", orient: str = "mean",
                 front: int | None = None, init: str = "eig", lam: float = 1.0, steps: int = 2000,
                 lr: float = 0.02, n_iter: int = 200, seed: int = 0):
        self.n_bases, self.method, self.metric, self.orient = n_bases, method, metric, orient
        self.front, self.init, self.lam, self.steps, self.lr = front, init, lam, steps, lr
        self.n_iter, self.seed = n_iter, seed

    def _check_params(self, F: int, N: int) -> int:
        K = self.n_bases
        if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
            raise ConfigError(f"n_bases={K!r}; the number of rank-one bases must be an integer >= 1")
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.metric not in METRICS:
            raise ConfigError(f"unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        if self.orient not in ("mean", "none"):
            raise ConfigError(f"unknown orient {self.orient!r}; choose 'mean' or 'none'")
        if self.init not in ("eig", "random"):
            raise ConfigError(f"unknown init {self.init!r}; choose 'eig' or 'random'")
        if self.front is not None and not 0 <= int(self.front) < N:
            raise ConfigError(f"front={self.front!r} is not a point index (0..{N - 1})")
        if not (self.lam >= 0 and self.lr > 0 and self.steps >= 1 and self.n_iter >= 1):
            raise ConfigError("lam must be >= 0, lr > 0, steps and n_iter >= 1")
        rank = min(2 * F, N - 1) - 3  # non-rigid directions left after centring and the rigid part
        if K > rank:
            raise DataError(f"n_bases={K} is more than the {rank} non-rigid directions that {F} frames of "
                            f"{N} points allow; use fewer bases or more frames")
        return int(K)

    def fit(self, W) -> "RankOneNRSfM":
        W = check_measurements(W)
        F, N = W.shape[0] // 2, W.shape[1]
        K = self._check_params(F, N)
        Wc, t = centre(W)
        # rigid part, Eq. 4.8 (P-III Eqs. 4-5), then the metric upgrade of Eq. 4.4
        U, sig, Vh = torch.linalg.svd(Wc, full_matrices=False)
        M0, B0 = U[:, :3] * sig[:3], Vh[:3]
        Q = metric_upgrade(M0, self.metric)
        M0, B0 = M0 @ Q, torch.linalg.solve(Q, B0)
        # non-rigid part, Eq. 4.12 (P-III Eq. 6): b_k^T = row k of dB = dV^T
        dW = Wc - M0 @ B0
        b = torch.linalg.svd(dW, full_matrices=False).Vh[:K]
        Mf = M0.reshape(F, 2, 3)
        if self.init == "eig":
            D0 = _init_directions(Mf, (dW @ b.T).reshape(F, 2, K))
        else:
            g = torch.Generator().manual_seed(self.seed)
            D0 = torch.randn(3, K, generator=g, dtype=DTYPE)
            D0 = D0 / D0.norm(dim=0, keepdim=True)
        if self.method == "als":
            D, alpha, self.n_iter_ = fit_rank_one_als(M0, dW, b, D0, n_iter=self.n_iter)
            self.loss_history_ = []
        else:
            D, alpha, self.loss_history_ = fit_rank_one_gradient(M0, B0, Wc, b, D0, self.lam, self.steps,
                                                                 self.lr)
            self.n_iter_ = self.steps
        # Alg. 2 per frame, rotations completed to 3 x 3
        Kc, R2 = camera_rotation(Mf)
        R = complete_rotation(R2)
        if self.orient == "mean":  # step 7: theta = 0 is the mean pose
            Rbar = project_to_rotation(R.sum(0))
            R, B0, D = R @ Rbar.T, Rbar @ B0, Rbar @ D
        if self.front is not None:  # depth reversal S -> diag(1, 1, -1) S, R_f -> diag(1, 1, -1) R_f diag(1, 1, -1)
            i = int(self.front)
            if (B0[2, i] + (alpha.mean(0) * D[2]) @ b[:, i]) > B0[2].mean():
                flip = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=DTYPE))
                R, B0, D = flip @ R @ flip, flip @ B0, flip @ D
        self.mean_shape_, self.directions_, self.b_ = B0, D, b
        self.bases_ = D.T[:, :, None] * b[:, None, :]
        self.cameras_, self.rotations_, self.angles_ = Kc, R, rotation_to_euler(R)
        self.projections_ = Kc @ R[:, :2]
        self.coefficients_, self.translations_ = alpha, t
        self.q_ = self.compose(Kc, self.angles_, alpha, t)
        self.singular_values_ = sig
        fitted = measurement_matrix(self.render(self.q_))
        self.reprojection_error_ = (fitted - W).pow(2).mean().sqrt().item()
        return self

    def fit_transform(self, W) -> Tensor:
        """fit(W) and return the attribute vectors q_ of the fitted frames (F x (K + 8))."""
        return self.fit(W).q_

    @staticmethod
    def compose(cameras: Tensor, angles: Tensor, alpha: Tensor, t: Tensor) -> Tensor:
        """q = (k11, k12, k22, theta, alpha, t) from its parts (Eq. 4.14)."""
        k = torch.stack([cameras[..., 0, 0], cameras[..., 0, 1], cameras[..., 1, 1]], -1)
        return torch.cat([k, angles, alpha, t], -1)

    def _check_fitted(self):
        if not hasattr(self, "bases_"):
            raise ConfigError("this RankOneNRSfM is not fitted yet; call fit(W) first")

    def render(self, q) -> Tensor:
        """The backbone R(q) of Eq. 4.14 with the fitted bases: q (... x (K + 8)) -> ... x N x 2.
        Differentiable when q is a tensor that requires grad."""
        self._check_fitted()
        q = q if isinstance(q, torch.Tensor) else _tensor(q, "q")
        if not torch.isfinite(q.detach()).all():
            raise DataError("q holds NaN or infinite values")
        return backbone(q, self.mean_shape_, self.bases_)

    def transform(self, landmarks2d, optimizer: str = "lbfgs", steps: int | None = None, lr: float | None = None) -> Tensor:
        """q* = argmin_q ||R(q) - X_new||_F^2 (P-III Eq. 11) for each landmark set (B x N x 2, or one
        N x 2), by gradient descent on all sets at once: ``lbfgs`` (quasi-Newton with a strong-Wolfe
        line search; default 100 iterations) or ``adam`` (default 1500 steps, learning rate 0.01
        decaying by cosine to 1 %). Start: t = the centroid, M = X_c B_0^+ split by Alg. 2 (theta by
        the extraction of Eq. 4.11), alpha = 0. Coordinates are scaled by the RMS of the centred
        landmarks inside the loop."""
        self._check_fitted()
        if optimizer not in ("lbfgs", "adam"):
            raise ConfigError(f"unknown optimizer {optimizer!r}; choose 'lbfgs' or 'adam'")
        X = _tensor(landmarks2d, "landmarks2d")
        single = X.dim() == 2
        X = X[None] if single else X
        N = self.mean_shape_.shape[1]
        if X.dim() != 3 or X.shape[1:] != (N, 2):
            raise DataError(f"landmarks have shape {tuple(X.shape)}; this model expects B x {N} x 2")
        if not torch.isfinite(X).all():
            raise DataError("the landmarks hold NaN or infinite values")
        K = self.n_bases
        t = X.mean(1)
        Xc = (X - t[:, None]).transpose(1, 2)  # B x 2 x N
        s = Xc.pow(2).mean().sqrt().clamp_min(1e-300)
        B0 = self.mean_shape_
        Kc, R2 = camera_rotation(Xc @ torch.linalg.pinv(B0))
        q = self.compose(Kc / s, rotation_to_euler(R2), torch.zeros(len(X), K, dtype=DTYPE), torch.zeros_like(t))
        q.requires_grad_(True)
        target = Xc.transpose(1, 2) / s

        def loss_fn():
            return (backbone(q, B0, self.bases_) - target).pow(2).sum()

        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS([q], lr=1.0 if lr is None else lr, max_iter=steps or 100, history_size=20,
                                    tolerance_grad=1e-12, tolerance_change=1e-16, line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad()
                loss = loss_fn()
                loss.backward()
                return loss

            opt.step(closure)
        else:
            steps, lr = steps or 1500, lr or 0.01
            opt = torch.optim.Adam([q], lr=lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.01)
            for _ in range(steps):
                opt.zero_grad()
                loss_fn().backward()
                opt.step()
                sched.step()
        q = q.detach()
        k, theta, alpha, tq = split_q(q, K)
        q = torch.cat([k * s, theta, alpha, tq * s + t], -1)
        return q[0] if single else q

