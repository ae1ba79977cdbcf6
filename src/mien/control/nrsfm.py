"""Rank-one non-rigid structure from motion and the landmark backbone R(q) (Haas thesis Ch. 4.1-4.2;
Paper III §3.1; Brandt & Ackermann 2019).

Conventions. A measurement matrix ``W`` is 2F x N: rows 2f and 2f+1 hold the x and y image
coordinates of the N points of frame f (the block row X_f of Eq. 4.6), so F landmark sets
(F x N x 2, the sample-dict ``landmarks2d``) become W by :func:`measurement_matrix`. Shapes are
3 x N as in the thesis (``mean_shape_`` is B_0, ``bases_[k]`` is B_k = d_k b_k^T); angles are
radians, theta = (theta_x, theta_y, theta_z) with R(theta) = R_z R_y R_x (Eq. 4.11); an attribute
vector is q = (k11, k12, k22, theta_x, theta_y, theta_z, alpha_1..alpha_K, t_x, t_y), dim K + 8
(Eq. 4.14 = P-III Eq. 2).

Pipeline (P-III §3.1.1, "Alg. B" of the digest):

1. centre each frame (the centroid is the translation t_f) so that rank(W) <= 3 for a rigid
   object (Eq. 4.2 with the erratum "<= 3 after centring");
2. rigid part from the three dominant singular triplets, W_0 = M_0 B_0 (Eqs. 4.3, 4.8);
3. metric upgrade (Tomasi-Kanade, the text after Eq. 4.4): the invertible Q of Eq. 4.4 is chosen so
   that every M_f Q has orthogonal rows of equal norm (weak perspective; ``metric="orthographic"``
   asks for M_f M_f^T = I_2 exactly, ``metric="none"`` keeps the raw P-III split M_0 = U_0 Sigma_0,
   B_0 = V_0^T). W_0 = (M_0 Q)(Q^-1 B_0) is unchanged, and the rotations become true rotations up
   to one global rotation (and the depth reversal that orthography cannot see);
4. non-rigid part: the SVD of dW = W - W_0 (Eq. 4.12); b_k^T is row k of dB = dV^T;
5. D = [d_1..d_K] and alpha by ALS (Brandt & Ackermann; Eq. 4.13, with the erratum's + sign) or by
   Adam on Eq. 10 (P-III);
6. each M_f split into camera K_f and rotation R_f by Alg. 2 (QR with the sign fix), Euler angles
   by the extraction formulas consistent with Eq. 4.11;
7. the basis shapes turned so that theta = 0 is the mean pose (the thesis leaves this step unstated);
8. new landmarks: q* = argmin_q ||R(q) - X_new||_F^2 (Eq. 11) by L-BFGS or Adam.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mien.errors import ConfigError, DataError

Tensor = torch.Tensor
DTYPE = torch.float64
METRICS = ("scaled", "orthographic", "none")
METHODS = ("als", "gradient")


# ----------------------------------------------------------------------------- inputs


def _tensor(x, name: str) -> Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(DTYPE)
    try:
        return torch.as_tensor(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError):
        raise DataError(f"{name} is not a numeric array; pass a 2F x N matrix or F x N x 2 landmarks") from None


def measurement_matrix(landmarks2d) -> Tensor:
    """Stack F landmark sets (F x N x 2) into W (2F x N), frame f in rows 2f (x) and 2f + 1 (y)."""
    x = _tensor(landmarks2d, "landmarks2d")
    if x.dim() != 3 or x.shape[-1] != 2:
        raise DataError(f"landmarks2d has shape {tuple(x.shape)}; expected F x N x 2")
    return x.transpose(1, 2).reshape(2 * x.shape[0], x.shape[1])


def landmarks_from(W: Tensor) -> Tensor:
    """The inverse of :func:`measurement_matrix`: W (2F x N) -> F x N x 2."""
    return W.reshape(-1, 2, W.shape[-1]).transpose(1, 2)


def check_measurements(W, min_frames: int = 3, min_points: int = 4) -> Tensor:
    """W as a float64 2F x N tensor (F x N x 2 landmarks are stacked first), or a one-line error."""
    W = _tensor(W, "W")
    if W.dim() == 3:
        W = measurement_matrix(W)
    if W.dim() != 2 or W.shape[0] % 2:
        raise DataError(f"W has shape {tuple(W.shape)}; expected a 2F x N measurement matrix "
                        "(x and y rows per frame) or F x N x 2 landmarks")
    if not torch.isfinite(W).all():
        raise DataError(f"W holds {int((~torch.isfinite(W)).sum())} NaN or infinite values; "
                        "drop or fill the frames with missing landmarks first")
    F, N = W.shape[0] // 2, W.shape[1]
    if F < min_frames:
        raise DataError(f"W has {F} frame(s); structure from motion needs at least {min_frames}")
    if N < min_points:
        raise DataError(f"W has {N} point(s) per frame; structure from motion needs at least {min_points}")
    return W


def centre(W: Tensor) -> tuple[Tensor, Tensor]:
    """Remove each frame's centroid: (W - t (x) 1^T, t as F x 2). After this rank(W) <= 3 for a
    rigid object under an affine camera (Eq. 4.2, erratum)."""
    t = W.mean(1)
    return W - t[:, None], t.reshape(-1, 2)


# ----------------------------------------------------------------------------- rotations


def euler_to_rotation(theta: Tensor) -> Tensor:
    """R(theta) = R_z(theta_z) R_y(theta_y) R_x(theta_x) with the matrices of Eq. 4.11; theta is
    ... x 3 (radians, order x, y, z), differentiable; returns ... x 3 x 3."""
    cx, cy, cz = torch.cos(theta).unbind(-1)
    sx, sy, sz = torch.sin(theta).unbind(-1)
    o, z = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([o, z, z, z, cx, -sx, z, sx, cx], -1)
    ry = torch.stack([cy, z, sy, z, o, z, -sy, z, cy], -1)
    rz = torch.stack([cz, -sz, z, sz, cz, z, z, z, o], -1)
    shape = theta.shape[:-1] + (3, 3)
    return rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)


def rotation_to_euler(R: Tensor) -> Tensor:
    """Euler angles of R = R_z R_y R_x (Eq. 4.11; digest §1.6): theta_y = -arcsin r_31,
    theta_x = atan2(r_32, r_33), theta_z = atan2(r_21, r_11). R is ... x 3 x 3, or ... x 2 x 3 (two
    rows, completed by r_3 = r_1 x r_2). theta_y lies in [-pi/2, pi/2]."""
    R = complete_rotation(R) if R.shape[-2] == 2 else R
    ty = -torch.asin(R[..., 2, 0].clamp(-1.0, 1.0))
    tx = torch.atan2(R[..., 2, 1], R[..., 2, 2])
    tz = torch.atan2(R[..., 1, 0], R[..., 0, 0])
    return torch.stack([tx, ty, tz], -1)


def complete_rotation(R2: Tensor) -> Tensor:
    """Two orthonormal rows (... x 2 x 3) -> the rotation (det +1) with r_3 = r_1 x r_2."""
    r3 = torch.linalg.cross(R2[..., 0, :], R2[..., 1, :])
    return torch.cat([R2, r3[..., None, :]], -2)


def project_to_rotation(A: Tensor) -> Tensor:
    """The rotation nearest to A (... x 3 x 3) in Frobenius norm (orthogonal Procrustes, det +1)."""
    U, _, Vh = torch.linalg.svd(A)
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return U @ D @ Vh


def camera_rotation(M: Tensor) -> tuple[Tensor, Tensor]:
    """Alg. 2: split projection matrices M (... x 2 x 3) into K (... x 2 x 2, upper triangular with
    positive diagonal) and R (... x 2 x 3, orthonormal rows) with M = K R = K [I | 0] R_3x3 (Eq. 4.10):
    M' = flipud(M); Q, R~ = QR(M'^T); K' = flipud(R~^T); K'' = fliplr(K'); R' = flipud(Q^T);
    S = diag(sign(diag(K''))); K = K'' S; R = S R'."""
    Mp = M.flip(-2)
    Q, Rt = torch.linalg.qr(Mp.transpose(-1, -2))  # reduced: Q ... x 3 x 2, Rt ... x 2 x 2
    Kp = Rt.transpose(-1, -2).flip(-2)
    Kpp = Kp.flip(-1)
    Rp = Q.transpose(-1, -2).flip(-2)
    s = torch.sign(torch.diagonal(Kpp, dim1=-2, dim2=-1))
    s = torch.where(s == 0, torch.ones_like(s), s)
    S = torch.diag_embed(s)
    return Kpp @ S, S @ Rp


def camera_matrix(k: Tensor) -> Tensor:
    """k = (k11, k12, k22) (... x 3) -> K = [[k11, k12], [0, k22]] (... x 2 x 2) of Eq. 4.10."""
    k11, k12, k22 = k.unbind(-1)
    return torch.stack([torch.stack([k11, k12], -1), torch.stack([torch.zeros_like(k22), k22], -1)], -2)


# ----------------------------------------------------------------------------- rigid factorisation


def _g(a: Tensor, b: Tensor) -> Tensor:
    """Coefficients of a^T L b in the six entries (L11, L12, L13, L22, L23, L33) of a symmetric L."""
    return torch.stack([a[..., 0] * b[..., 0], a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0],
                        a[..., 0] * b[..., 2] + a[..., 2] * b[..., 0], a[..., 1] * b[..., 1],
                        a[..., 1] * b[..., 2] + a[..., 2] * b[..., 1], a[..., 2] * b[..., 2]], -1)


def metric_upgrade(M: Tensor, metric: str = "scaled") -> Tensor:
    """The Q of Eq. 4.4 that makes the cameras M_f Q metric (Tomasi-Kanade; thesis text after
    Eq. 4.4). With L = Q Q^T: ``orthographic`` solves m_1^T L m_1 = m_2^T L m_2 = 1, m_1^T L m_2 = 0
    for every frame in least squares (M_f M_f^T = I_2); ``scaled`` (weak perspective, one unknown
    scale per frame) solves m_1^T L m_1 - m_2^T L m_2 = 0, m_1^T L m_2 = 0 up to scale and
    normalises the mean of m^T L m to 1. Q is unique up to a global rotation (and reflection)."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric upgrade {metric!r}; choose one of {', '.join(METRICS)}")
    if metric == "none":
        return torch.eye(3, dtype=M.dtype)
    m = M.reshape(-1, 2, 3)
    g11, g22, g12 = _g(m[:, 0], m[:, 0]), _g(m[:, 1], m[:, 1]), _g(m[:, 0], m[:, 1])
    if metric == "orthographic":
        A = torch.cat([g11, g22, g12])
        rhs = torch.cat([torch.ones(len(m) * 2, dtype=M.dtype), torch.zeros(len(m), dtype=M.dtype)])
        l = torch.linalg.lstsq(A, rhs[:, None]).solution[:, 0]
    else:
        A = torch.cat([g11 - g22, g12])
        l = torch.linalg.svd(A).Vh[-1]
    L = torch.stack([torch.stack([l[0], l[1], l[2]]), torch.stack([l[1], l[3], l[4]]),
                     torch.stack([l[2], l[4], l[5]])])
    if metric == "scaled":
        L = L / ((g11 + g22) @ l).mean() * 2  # mean of m_1^T L m_1 + m_2^T L m_2 over frames = 2
    evals, evecs = torch.linalg.eigh(L)
    if (evals <= 0).any():
        evals = evals.clamp_min(evals.max() * 1e-8)  # noise can make L indefinite; nearest PSD
    return evecs * evals.sqrt()


def rigid_factorisation(W, metric: str = "scaled") -> dict[str, Tensor]:
    """Tomasi-Kanade factorisation W = M S (Eqs. 4.1-4.4) of the centred measurements: the SVD's
    three dominant triplets give M = U_0 Sigma_0^{1/2}, S = Sigma_0^{1/2} V_0^T (Eq. 4.3), then the
    metric upgrade M Q, Q^-1 S (Eq. 4.4). Returns ``M`` (2F x 3), ``S`` (3 x N), ``t`` (F x 2),
    ``singular_values`` of the centred W and ``residual`` = ||W_c - M S||_F / ||W_c||_F."""
    W = check_measurements(W, min_frames=2)
    Wc, t = centre(W)
    U, sig, Vh = torch.linalg.svd(Wc, full_matrices=False)
    root = sig[:3].sqrt()
    M, S = U[:, :3] * root, root[:, None] * Vh[:3]
    Q = metric_upgrade(M, metric)
    M, S = M @ Q, torch.linalg.solve(Q, S)
    residual = (Wc - M @ S).norm() / Wc.norm().clamp_min(1e-300)
    return {"M": M, "S": S, "t": t, "singular_values": sig, "residual": residual}


# ----------------------------------------------------------------------------- rank-one fits (Eq. 4.13, Eq. 10)


def reconstruct(M: Tensor, B0: Tensor, D: Tensor, alpha: Tensor, b: Tensor) -> Tensor:
    """X^(D, alpha) = M_0 B_0 + M^alpha B (P-III Eqs. 7-9; thesis Eq. 4.13 with the + sign): frame f
    is M_f [B_0 + sum_k alpha_fk d_k b_k^T]. M is 2F x 3, B0 3 x N, D 3 x K, alpha F x K, b K x N."""
    F = alpha.shape[0]
    Mf = M.reshape(F, 2, 3)
    MD = Mf @ D  # F x 2 x K: M_f d_k
    return M @ B0 + torch.einsum("fk,fck,kn->fcn", alpha, MD, b).reshape(2 * F, -1)


def _init_directions(Mf: Tensor, dm: Tensor) -> Tensor:
    """Unit d_k maximising sum_f (dm_fk^T M_f d)^2 / sum_f ||M_f d||^2 (a generalised eigenproblem),
    the minimiser of Eq. 4.13 for basis k when ||M_f d|| is the same in every frame."""
    C = torch.einsum("fci,fcj->ij", Mf, Mf)
    v = torch.einsum("fci,fck->fki", Mf, dm)  # M_f^T dm_fk
    A = torch.einsum("fki,fkj->kij", v, v)
    Lc = torch.linalg.cholesky(C + 1e-12 * torch.eye(3, dtype=C.dtype) * C.trace())
    Li = torch.linalg.inv(Lc)
    _, vec = torch.linalg.eigh(Li @ A @ Li.T)
    d = Li.T @ vec[..., -1].T  # 3 x K
    return d / d.norm(dim=0, keepdim=True)


def fit_rank_one_als(M: Tensor, dW: Tensor, b: Tensor, D0: Tensor | None = None, n_iter: int = 200,
                     tol: float = 1e-12) -> tuple[Tensor, Tensor, int]:
    """Alternating least squares for Eq. 4.13 (Brandt & Ackermann 2019, "exploiting the
    orthonormality of the non-rigid basis shapes", P-III §3.1.1). Because the rows b_k^T of dB are
    orthonormal, ||dW - sum_k c_k b_k^T||^2 = const + sum_k ||dW b_k - c_k||^2 with the frame-f block
    of c_k equal to alpha_fk M_f d_k, so each basis is fitted on its own:

    alpha_fk = (M_f d_k)^T (dW b_k)_f / ||M_f d_k||^2;  d_k = (sum_f alpha_fk^2 M_f^T M_f)^-1
    sum_f alpha_fk M_f^T (dW b_k)_f, then d_k <- d_k / ||d_k|| and alpha_k <- alpha_k ||d_k|| (the
    product, hence the model, is unchanged; d_k^T d_k = 1 holds exactly).
    Returns D (3 x K), alpha (F x K) and the number of sweeps."""
    F = M.shape[0] // 2
    Mf = M.reshape(F, 2, 3)
    dm = (dW @ b.T).reshape(F, 2, -1)  # F x 2 x K: (dW b_k)_f
    D = _init_directions(Mf, dm) if D0 is None else D0 / D0.norm(dim=0, keepdim=True)
    MtM = Mf.transpose(1, 2) @ Mf  # F x 3 x 3
    Mtdm = Mf.transpose(1, 2) @ dm  # F x 3 x K
    prev, it = math.inf, 0
    for it in range(1, n_iter + 1):
        MD = Mf @ D
        alpha = (MD * dm).sum(1) / (MD * MD).sum(1).clamp_min(1e-300)
        A = torch.einsum("fk,fij->kij", alpha ** 2, MtM)
        r = torch.einsum("fk,fik->ki", alpha, Mtdm)
        ridge = 1e-14 * A.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1e-300)[:, None, None]
        D = torch.linalg.solve(A + ridge * torch.eye(3, dtype=A.dtype), r[..., None])[..., 0].T
        n = D.norm(dim=0)
        D, alpha = D / n, alpha * n
        err = ((dm - (Mf @ D) * alpha[:, None]) ** 2).sum().item()
        if prev < math.inf and prev - err <= tol * max(prev, 1e-300):
            break
        prev = err
    MD = Mf @ D
    alpha = (MD * dm).sum(1) / (MD * MD).sum(1).clamp_min(1e-300)
    return D, alpha, it


def fit_rank_one_gradient(M: Tensor, B0: Tensor, W: Tensor, b: Tensor, D0: Tensor, lam: float = 1.0,
                          steps: int = 2000, lr: float = 0.02) -> tuple[Tensor, Tensor, list]:
    """P-III Eq. 10 by Adam: min_{D, alpha} ||X^(D, alpha) - X||_F^2 + lambda sum_k (d_k^T d_k - 1)^2
    with X^ = M_0 B_0 + M^alpha B (Eqs. 7-9), M_0 and B_0 fixed. W is scaled by its RMS inside the
    loop (the problem is equivariant: alpha scales with W, D does not) so that one learning rate
    suits any units (lambda weighs the penalty against the scaled data term); the learning rate
    decays by cosine to 1 %. alpha starts at zero. After the
    descent each d_k is rescaled to unit norm and alpha_k by the inverse (the model is unchanged).
    Returns D (3 x K), alpha (F x K) and the loss every 100 steps."""
    alpha_shape = (W.shape[0] // 2, b.shape[0])
    s = W.pow(2).mean().sqrt().clamp_min(1e-300)
    X, B0s = W / s, B0 / s
    D = D0.clone().requires_grad_(True)
    alpha = torch.zeros(alpha_shape, dtype=W.dtype, requires_grad=True)
    opt = torch.optim.Adam([D, alpha], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.01)
    history = []
    for step in range(steps):
        opt.zero_grad()
        loss = (reconstruct(M, B0s, D, alpha, b) - X).pow(2).sum() + lam * ((D * D).sum(0) - 1).pow(2).sum()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            history.append(loss.item())
    D, alpha = D.detach(), alpha.detach() * s
    n = D.norm(dim=0)
    return D / n, alpha * n, history


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


# ----------------------------------------------------------------------------- planted data and the world


def planted_sequence(F: int = 100, N: int = 68, K: int = 3, seed: int = 0, noise: float = 0.0,
                     camera: str = "scaled", identifiable: bool = True, deformation: float = 0.5,
                     angles_deg: tuple = (20.0, 45.0, 15.0)) -> dict[str, Tensor]:
    """A planted rank-one NRSfM sequence with known truth (digest §4, landmark substitute).

    Mean shape B_0 (3 x N, centred, depth half as deep as wide); rank-one bases d_k b_k^T with unit
    d_k and orthonormal b_k orthogonal to B_0's rows and to 1; rotations R_z R_y R_x with angles
    uniform in +-angles_deg (pitch theta_x, yaw theta_y, roll theta_z); cameras K_f = s_f I with
    s_f ~ U(0.8, 1.2) (``scaled``), I (``orthographic``) or upper triangular with skew
    (``affine``: k12 ~ U(-0.1, 0.1), k22 = s_f (1 + U(-0.1, 0.1))); translations ~ U(-0.2, 0.2);
    Gaussian noise of std ``noise`` added to W.

    identifiable=True orthogonalises the coefficient columns so that the columns c_k (frame f
    block alpha_fk M_f d_k) are orthogonal to each other and to the columns of M, and scales them to
    distinct norms below the rigid singular values (the largest at ``deformation`` times the
    smallest rigid one, each next at 0.6 of the previous): then the SVDs of Eqs. 4.8 and 4.12
    return exactly the planted rigid and non-rigid subspaces and b_k, the assumption under which
    the rank-one method is exact. identifiable=False draws alpha_fk ~ N(0, sigma_k^2) freely.

    Returns W (2F x N), landmarks2d (F x N x 2), mean_shape, directions (3 x K), b (K x N), bases
    (K x 3 x N), coefficients (F x K), angles (F x 3), rotations (F x 3 x 3), cameras (F x 2 x 2),
    translations (F x 2), q (F x (K + 8))."""
    if F < 3 or N < K + 5 or K < 0:
        raise ConfigError(f"planted_sequence needs F >= 3 frames, K >= 0 and N >= K + 5 points (got {F, N, K})")
    if camera not in ("scaled", "orthographic", "affine"):
        raise ConfigError(f"unknown camera {camera!r}; choose scaled, orthographic or affine")
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=DTYPE)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=DTYPE)

    S0 = randn(3, N) * torch.tensor([1.0, 1.0, 0.5], dtype=DTYPE)[:, None]
    S0 = S0 - S0.mean(1, keepdim=True)
    basis = torch.cat([torch.ones(N, 1, dtype=DTYPE) / math.sqrt(N), torch.linalg.qr(S0.T).Q], 1)
    b = randn(N, K)
    b = b - basis @ (basis.T @ b)
    b = torch.linalg.qr(b).Q.T  # K x N, orthonormal, orthogonal to 1 and to S0's rows
    D = randn(3, K)
    D = D / D.norm(dim=0, keepdim=True)
    theta = torch.deg2rad(torch.tensor(angles_deg, dtype=DTYPE)) * (2 * rand(F, 3) - 1)
    R = euler_to_rotation(theta)
    s = 0.8 + 0.4 * rand(F) if camera != "orthographic" else torch.ones(F, dtype=DTYPE)
    k12 = 0.2 * rand(F) - 0.1 if camera == "affine" else torch.zeros(F, dtype=DTYPE)
    k22 = s * (1 + 0.2 * rand(F) - 0.1) if camera == "affine" else s
    Kc = camera_matrix(torch.stack([s, k12, k22], -1))
    Mf = Kc @ R[:, :2]  # F x 2 x 3
    M = Mf.reshape(2 * F, 3)
    rigid = torch.linalg.svdvals(M @ S0)[2]
    alpha = randn(F, K)
    sigma = deformation * rigid * 0.6 ** torch.arange(K, dtype=DTYPE)
    MtM = Mf.transpose(1, 2) @ Mf
    for k in range(K):
        MD = (Mf @ D[:, k]).reshape(2 * F)  # frame blocks M_f d_k
        if identifiable:
            G = [(MtM @ D[:, k])]  # F x 3: c_k^T M[:, i] = sum_f alpha_fk (M_f^T M_f d_k)_i
            G += [(alpha[:, j] * (MtM @ D[:, j] @ D[:, k]))[:, None] for j in range(k)]
            G = torch.linalg.qr(torch.cat(G, 1)).Q
            alpha[:, k] = alpha[:, k] - G @ (G.T @ alpha[:, k])
        ck = (alpha[:, k, None] * MD.reshape(F, 2)).reshape(-1)
        alpha[:, k] *= sigma[k] / ck.norm()
    t = 0.4 * rand(F, 2) - 0.2
    bases = D.T[:, :, None] * b[:, None, :]
    q = RankOneNRSfM.compose(Kc, theta, alpha, t)
    lm = backbone(q, S0, bases)
    lm = lm + noise * randn(*lm.shape)
    return {"W": measurement_matrix(lm), "landmarks2d": lm, "mean_shape": S0, "directions": D, "b": b,
            "bases": bases, "coefficients": alpha, "angles": theta, "rotations": R, "cameras": Kc,
            "translations": t, "q": q}


def world_measurements(n: int, size: int = 32, seed: int = 0, identity: int | None = 0, fixed: dict | None = None,
                       **design_kwargs) -> dict:
    """W from world renders: ``WorldDataset(n, size, seed, fixed=..., **design_kwargs).batch(range(n))``.
    identity: index of a face (same seed) whose landmark-shaping identity factors (the shape modes,
    sex and age) are held fixed, so that all n faces show one identity; None lets them vary. E.g.
    ``fixed={"expression": "neutral"}, ranges={"yaw": (-30, 30)}``. Returns W (2n x 68), landmarks2d
    (n x 68 x 2 in [0, 1]), landmarks3d and the factors (yaw, pitch, roll in degrees: the world's
    R = Rz(roll) Rx(pitch) Ry(yaw), image y down)."""
    from mien.data.world import WORLD_FACTORS, WorldDataset

    fixed = dict(fixed or {})
    if identity is not None:
        face = WorldDataset(identity + 1, size, seed).draw([identity])
        for f in WORLD_FACTORS:
            if (f.name.startswith("shape_") or f.name in ("sex", "age")) and f.name not in fixed:
                fixed[f.name] = face[f.name].item()
    batch = WorldDataset(n, size, seed, fixed=fixed, **design_kwargs).batch(range(n))
    lm = batch["landmarks2d"].to(DTYPE)
    return {"W": measurement_matrix(lm), "landmarks2d": lm, "landmarks3d": batch["landmarks3d"],
            "factors": batch["factors"]}


__all__ = ["RankOneNRSfM", "backbone", "camera_matrix", "camera_rotation", "centre", "check_measurements",
           "complete_rotation", "euler_to_rotation", "fit_rank_one_als", "fit_rank_one_gradient",
           "landmarks_from", "measurement_matrix", "metric_upgrade", "planted_sequence",
           "project_to_rotation", "reconstruct", "rigid_factorisation", "rotation_to_euler",
           "split_q", "world_measurements"]
