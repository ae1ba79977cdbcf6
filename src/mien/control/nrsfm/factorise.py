"""Rigid (Tomasi-Kanade) and rank-one factorisations: Eqs. 4.1-4.13 and P-III Eq. 10."""

from __future__ import annotations

import math

import torch

from mien.control.nrsfm.geometry import Tensor, centre, check_measurements
from mien.errors import ConfigError

METRICS = ("scaled", "orthographic", "none")


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

