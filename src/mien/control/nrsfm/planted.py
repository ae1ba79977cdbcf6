"""Planted rank-one sequences with known truth and measurements from world renders (digest §4)."""

from __future__ import annotations

import math

import torch

from mien.control.nrsfm.estimator import RankOneNRSfM, backbone
from mien.control.nrsfm.geometry import DTYPE, Tensor, camera_matrix, euler_to_rotation, measurement_matrix
from mien.errors import ConfigError


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

