"""System H2 item 5 (Haas thesis Ch. 4.1-4.2, P-III §3.1): rigid factorisation, rank-one NRSfM (ALS
and the Eq. 10 gradient fit), Alg. 2, Euler angles, the backbone R(q) and the Eq. 11 fit, checked
against planted truth, the formulas and the world's exact pose."""

import math

import numpy as np
import pytest
import torch

from mien.control.nrsfm import (RankOneNRSfM, camera_rotation, euler_to_rotation, planted_sequence,
                                project_to_rotation, rigid_factorisation, rotation_to_euler, world_measurements)
from mien.data.world import geometry as geo
from mien.errors import ConfigError, DataError

F64 = torch.float64
FLIP = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=F64))  # the depth reversal of orthography


def angle_deg(A, B):
    """Rotation angle of A^T B per frame, degrees."""
    c = ((A.transpose(-1, -2) @ B).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(c.clamp(-1, 1)))


def aligned_error(R_fit, R_true):
    """Largest per-frame angle between R_fit and R_true G after the best global rotation G
    (Procrustes), also trying the depth-reversed rotations diag(1,1,-1) R diag(1,1,-1)."""
    errs = []
    for R in (R_fit, FLIP @ R_fit @ FLIP):
        G = project_to_rotation((R_true.transpose(1, 2) @ R).sum(0))
        errs.append(angle_deg(R_true @ G, R).max().item())
    return min(errs)


@pytest.fixture(scope="module")
def planted():
    return planted_sequence(F=100, N=68, K=3, seed=1)


@pytest.fixture(scope="module")
def fitted(planted):
    return RankOneNRSfM(n_bases=3, method="als").fit(planted["W"])


def test_rigid_factorisation_rank_three_and_shape_up_to_rotation():
    p = planted_sequence(F=30, N=40, K=0, seed=2, camera="orthographic")
    r = rigid_factorisation(p["W"], metric="orthographic")
    sig = r["singular_values"]
    assert r["residual"] < 1e-12 and (sig[3:] < 1e-12 * sig[0]).all()  # rank(W_c) <= 3 (Eq. 4.2)
    Mf = r["M"].reshape(30, 2, 3)
    assert torch.allclose(Mf @ Mf.transpose(1, 2), torch.eye(2, dtype=F64).expand(30, 2, 2), atol=1e-10)
    # metric shape = G S_true with G orthogonal (a rotation, or a rotation and the depth reflection)
    U, _, Vh = torch.linalg.svd(r["S"] @ p["mean_shape"].T)
    G = U @ Vh
    assert torch.allclose(G @ p["mean_shape"], r["S"], atol=1e-9)
    # without the upgrade (Eq. 4.3 alone) the shape is an affine image of the truth
    S_raw = rigid_factorisation(p["W"], metric="none")["S"]
    A = torch.linalg.lstsq(p["mean_shape"].T, S_raw.T).solution.T
    assert torch.allclose(A @ p["mean_shape"], S_raw, atol=1e-9)
    assert (S_raw @ S_raw.T - torch.diag(torch.diag(S_raw @ S_raw.T))).abs().max() < 1e-9  # Sigma^1/2 V^T


def test_alg2_camera_rotation_split():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(200, 2, 3, generator=g, dtype=F64)
    K, R = camera_rotation(M)
    assert torch.allclose(K @ R, M, atol=1e-12)
    assert (K[:, 1, 0] == 0).all() and (torch.diagonal(K, dim1=1, dim2=2) > 0).all()
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(2, dtype=F64).expand(200, 2, 2), atol=1e-12)
    # the split is unique: a planted K (positive diagonal, skew) and rotation come back exactly
    p = planted_sequence(F=50, N=20, K=1, seed=3, camera="affine")
    K2, R2 = camera_rotation(p["cameras"] @ p["rotations"][:, :2])
    assert torch.allclose(K2, p["cameras"], atol=1e-12) and torch.allclose(R2, p["rotations"][:, :2], atol=1e-12)


def test_euler_angles_invert_rz_ry_rx():
    g = torch.Generator().manual_seed(1)
    u = torch.rand(500, 3, generator=g, dtype=F64) * 2 - 1
    theta = u * torch.tensor([math.pi, math.pi / 2 * 0.999, math.pi], dtype=F64)
    R = euler_to_rotation(theta)
    c, s = np.cos(theta[0].numpy()), np.sin(theta[0].numpy())
    Rx = np.array([[1, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]])  # Eq. 4.11
    Ry = np.array([[c[1], 0, s[1]], [0, 1, 0], [-s[1], 0, c[1]]])
    Rz = np.array([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1]])
    assert np.allclose(R[0].numpy(), Rz @ Ry @ Rx, atol=1e-14)
    assert torch.allclose(rotation_to_euler(R), theta, atol=1e-9)
    assert torch.allclose(rotation_to_euler(R[:, :2]), theta, atol=1e-9)  # two rows, r3 = r1 x r2


def test_nrsfm_recovers_planted_rotations_and_model(planted, fitted):
    m, p = fitted, planted
    assert aligned_error(m.rotations_, p["rotations"]) < 1e-4  # degrees, up to one global rotation
    assert m.reprojection_error_ < 1e-10 * p["W"].abs().max()
    # each b_k is a planted one up to sign: |b_fit b_true^T| is a permutation matrix
    overlap = (m.b_ @ p["b"].T).abs()
    assert torch.allclose(overlap.max(1).values, torch.ones(3, dtype=F64), atol=1e-8)
    assert torch.allclose(m.directions_.norm(dim=0), torch.ones(3, dtype=F64), atol=1e-12)
    assert m.q_.shape == (100, 3 + 8) and m.bases_.shape == (3, 3, 68)
    # R(q_f) of Eq. 4.14 reproduces the frames; K_f R_f = M_f (Alg. 2)
    assert torch.allclose(m.render(m.q_), p["landmarks2d"], atol=1e-9)
    assert torch.allclose(m.cameras_ @ m.rotations_[:, :2], m.projections_, atol=1e-12)
    # the cameras are scaled orthographic up to one global scale (metric upgrade, Eq. 4.4)
    ratio = torch.diagonal(m.cameras_, dim1=1, dim2=2) / torch.diagonal(p["cameras"], dim1=1, dim2=2)
    assert (ratio / ratio.mean() - 1).abs().max() < 1e-8 and m.cameras_[:, 0, 1].abs().max() < 1e-8


def test_nrsfm_with_noise_and_free_coefficients():
    noisy = planted_sequence(F=100, N=68, K=3, seed=4, noise=0.01)
    m = RankOneNRSfM(3).fit(noisy["W"])
    assert aligned_error(m.rotations_, noisy["rotations"]) < 1.5
    assert m.reprojection_error_ < 0.012  # close to the noise level 0.01
    free = planted_sequence(F=100, N=68, K=3, seed=4, identifiable=False)
    m = RankOneNRSfM(3).fit(free["W"])
    assert aligned_error(m.rotations_, free["rotations"]) < 6  # the rank-3 SVD mixes in deformation


def test_als_and_gradient_reach_comparable_reprojection_error():
    p = planted_sequence(F=40, N=40, K=2, seed=5, identifiable=False)
    als = RankOneNRSfM(2, method="als").fit(p["W"])
    grad = RankOneNRSfM(2, method="gradient", init="random", steps=600, lr=0.05, seed=0).fit(p["W"])
    rigid_only = (als.render(torch.cat([als.q_[:, :6], 0 * als.q_[:, 6:8], als.q_[:, 8:]], 1))
                  - p["landmarks2d"]).pow(2).mean().sqrt().item()
    assert als.reprojection_error_ < 0.5 * rigid_only  # the bases explain most of the deformation
    assert abs(grad.reprojection_error_ - als.reprojection_error_) < 0.01 * als.reprojection_error_
    assert grad.loss_history_[-1] < grad.loss_history_[0]
    assert torch.allclose(grad.directions_.norm(dim=0), torch.ones(2, dtype=F64), atol=1e-12)


def test_eq11_fit_recovers_planted_q(fitted):
    m = fitted
    g = torch.Generator().manual_seed(6)
    q = m.q_[:2].clone()
    q[:, 3:6] = torch.deg2rad(torch.tensor([15.0, 35.0, 12.0], dtype=F64)) * (2 * torch.rand(2, 3, generator=g, dtype=F64) - 1)
    q[:, 6:9] *= torch.tensor([[0.5, -1.0, 1.5], [1.2, 0.3, -0.7]], dtype=F64)
    q[:, 9:] += 0.1
    X = m.render(q)
    q_hat = m.transform(X)
    assert (q_hat - q).abs().max() < 1e-5  # camera, angles (radians), alpha, translation
    assert torch.allclose(m.render(q_hat), X, atol=1e-6)
    assert m.transform(X[0], steps=5).shape == (11,)
    qg = q.clone().requires_grad_(True)  # R(q) is differentiable
    m.render(qg).sum().backward()
    assert torch.isfinite(qg.grad).all() and qg.grad.abs().sum() > 0


def test_world_yaw_matches_exact_pose_after_one_alignment():
    """One neutral identity under yaw in +-30 and pitch in +-12 degrees: the recovered rotations,
    after one global Procrustes alignment, give the world's yaw and pitch within 0.05 degrees
    (landmarks are float32; the world camera is weak perspective, so the rigid model is exact)."""
    w = world_measurements(30, fixed={"expression": "neutral", "roll": 0.0},
                           ranges={"yaw": (-30.0, 30.0), "pitch": (-12.0, 12.0)})
    m = RankOneNRSfM(1, front=30).fit(w["W"])
    f = w["factors"]
    R_world = geo.rotation(f["yaw"], f["pitch"], f["roll"]).to(F64)
    cam = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=F64))  # image y down: rows R_0, -R_1, -R_2
    R_cam = cam @ R_world
    G = project_to_rotation((R_cam.transpose(1, 2) @ m.rotations_).sum(0))
    R_est = cam @ m.rotations_ @ G.T  # back in the world's frame; world R = Rz(roll) Rx(pitch) Ry(yaw)
    yaw = torch.rad2deg(torch.atan2(-R_est[:, 2, 0], R_est[:, 2, 2]))
    pitch = torch.rad2deg(torch.asin(R_est[:, 2, 1]))
    assert (yaw - f["yaw"]).abs().max() < 0.05 and (pitch - f["pitch"]).abs().max() < 0.05
    # with image y down, Eq. 4.11's theta_y is minus the world's yaw; orient="mean" puts theta = 0 at the
    # sample's mean pose, a few degrees from the world's frontal pose, so theta_y = -yaw + offset
    assert (torch.rad2deg(m.angles_[:, 1]) + f["yaw"]).std() < 0.5
    assert m.reprojection_error_ < 1e-5


def world_yaw_error(m, f):
    """Largest |yaw error| (degrees) of a fit after one global Procrustes alignment to the world."""
    cam = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=F64))
    R_cam = cam @ geo.rotation(f["yaw"], f["pitch"], f["roll"]).to(F64)
    G = project_to_rotation((R_cam.transpose(1, 2) @ m.rotations_).sum(0))
    R_est = cam @ m.rotations_ @ G.T
    return (torch.rad2deg(torch.atan2(-R_est[:, 2, 0], R_est[:, 2, 2])) - f["yaw"]).abs().max().item()


def test_world_expressions_are_explained_by_the_bases():
    """One identity with expressions (intensity <= 0.5) under yaw and pitch: more rank-one bases lower
    the reprojection error; the rotations come from the rank-3 part M_0 alone (P-III refines only D
    and alpha), so deformation that the rigid SVD absorbs biases them, here by under 8 degrees."""
    w = world_measurements(40, fixed={"roll": 0.0}, ranges={"yaw": (-30.0, 30.0), "pitch": (-12.0, 12.0),
                                                           "intensity": (0.0, 0.5)})
    one, four = (RankOneNRSfM(k, front=30).fit(w["W"]) for k in (1, 4))
    assert four.reprojection_error_ < 0.5 * one.reprojection_error_
    assert world_yaw_error(four, w["factors"]) < 8.0


def test_bad_inputs_raise_one_line_errors(fitted):
    W = planted_sequence(F=10, N=20, K=1, seed=7)["W"]
    cases = [
        (DataError, lambda: RankOneNRSfM(1).fit(W[:-1])),  # odd number of rows
        (DataError, lambda: RankOneNRSfM(1).fit(W[None])),  # wrong rank
        (DataError, lambda: RankOneNRSfM(1).fit(torch.where(torch.arange(20) == 3, math.nan, W))),
        (ConfigError, lambda: RankOneNRSfM(0).fit(W)),
        (ConfigError, lambda: RankOneNRSfM(1, method="svd").fit(W)),
        (DataError, lambda: RankOneNRSfM(1).fit(W[:4])),  # two frames
        (DataError, lambda: RankOneNRSfM(30).fit(W)),  # more bases than non-rigid directions
        (DataError, lambda: RankOneNRSfM(1).fit("not numbers")),
        (ConfigError, lambda: RankOneNRSfM(1).render(torch.zeros(9))),
        (DataError, lambda: fitted.render(torch.zeros(5))),
        (DataError, lambda: fitted.transform(torch.zeros(3, 67, 2))),
        (DataError, lambda: fitted.transform(torch.full((68, 2), math.nan))),
    ]
    for err, call in cases:
        with pytest.raises(err) as info:
            call()
        assert "\n" not in str(info.value) and len(str(info.value)) > 10
