"""Inputs, rotations and cameras of rank-one NRSfM (Haas thesis Ch. 4.1-4.2; conventions in
:mod:`mien.control.nrsfm`)."""

from __future__ import annotations

import numpy as np
import torch

from mien.errors import DataError

Tensor = torch.Tensor
DTYPE = torch.float64


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

