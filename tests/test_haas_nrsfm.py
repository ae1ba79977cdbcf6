"""Haas P-III (system H2) beyond the NRSfM itself: the regressor phi (Eq. 12), the editors (Eqs. 14-15),
transfer, the stored model, the CLI and `mien reproduce haas-nrsfm` (tiny)."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
from model_helpers import mien_main  # noqa: F401 (fixtures)

from mien.control.nrsfm import RankOneNRSfM, planted_sequence
from mien.control.nrsfm import editors as ed
from mien.control.nrsfm.regressor import NRSfMRegressor, landmark_loss
from mien.errors import ConfigError, DataError

ZOO_GAN = "src/mien/zoo/weights/stylegan"


@pytest.fixture(scope="module")
def planted_phi():
    """Codes c (N x 12): a fixed random rotation of the planted frames' standardised q plus two
    nuisance coordinates; the NRSfM fitted on the landmarks, phi fitted on (c, landmarks) without q."""
    g = torch.Generator().manual_seed(0)
    data = planted_sequence(F=300, N=20, K=2, seed=3, angles_deg=(10.0, 30.0, 10.0))
    nrsfm = RankOneNRSfM(2).fit(data["W"])
    q = data["q"].float()
    mix = torch.linalg.qr(torch.randn(12, 12, generator=g)).Q
    codes = torch.cat([(q - q.mean(0)) / q.std(0).clamp_min(1e-6), torch.randn(len(q), 2, generator=g)], 1) @ mix
    phi = NRSfMRegressor("w", hidden=64, steps=400, batch=128, lr=3e-3).fit(codes, data["landmarks2d"], nrsfm)
    return {"phi": phi, "codes": codes, "landmarks": data["landmarks2d"].float(), "nrsfm": nrsfm}


def test_phi_learns_the_landmarks_without_q_targets(planted_phi):
    """Eq. 12 alone trains phi: its landmark loss falls far below the spread of the landmarks, and
    the loss reported equals landmark_loss(R(phi(c)), X) recomputed."""
    phi, c, X = planted_phi["phi"], planted_phi["codes"], planted_phi["landmarks"]
    spread = landmark_loss(X.mean(0, keepdim=True).expand_as(X), X).mean().item()
    with torch.no_grad():
        loss = landmark_loss(phi.render(phi(c)), X).mean().item()
    assert loss == pytest.approx(phi.train_loss_, rel=1e-5)
    assert loss < 0.05 * spread
    assert phi.loss_history_[-1] < 0.2 * phi.loss_history_[0]
    assert torch.allclose(landmark_loss(X, X), torch.zeros(len(X)))


def test_linear_edit_moves_phi_to_the_target_to_first_order(planted_phi):
    """J from jacrev matches central finite differences; for dq in J's range, w0 + J^+ dq moves phi
    by dq up to O(|dq|^2) (the error over |dq| vanishes as dq shrinks); the damped step moves phi by
    J J^T (J J^T + lambda m I)^-1 dq to first order."""
    phi, c = planted_phi["phi"], planted_phi["codes"]
    w0 = c[5]
    J = ed.jacobian(phi, w0)
    assert J.shape == (10, 12)
    v = torch.randn(12, generator=torch.Generator().manual_seed(1))
    eps = 1e-3
    with torch.no_grad():
        fd = (phi((w0 + eps * v)[None]) - phi((w0 - eps * v)[None]))[0] / (2 * eps)
        q0 = phi(w0[None])[0]
    assert (J @ v - fd).norm() < 2e-3 * fd.norm()
    direction = J @ torch.randn(12, generator=torch.Generator().manual_seed(2))  # a change phi can make
    ratios = []
    for h in (1e-1, 1e-2, 1e-3):
        target = q0 + h * direction
        w = ed.linear_edit(phi, w0[None], target)
        with torch.no_grad():
            ratios.append(((phi(w)[0] - target).norm() / (h * direction).norm()).item())
    assert ratios[-1] < 1e-2 and ratios[-1] <= ratios[0] + 1e-6
    lam = 0.5
    h = 1e-3
    wd = ed.linear_edit(phi, w0[None], q0 + h * direction, damping=lam)
    JJ = (J @ J.T).double()
    expected = JJ @ torch.linalg.solve(JJ + lam * JJ.diagonal().mean() * torch.eye(10, dtype=JJ.dtype),
                                       h * direction.double())
    with torch.no_grad():
        moved = (phi(wd)[0] - q0).double()
    assert (moved - expected).norm() < 1e-2 * expected.norm()
    assert moved.norm() < (h * direction).norm()


def test_gradient_edit_reaches_the_target_and_the_distance_term_holds_it_back(planted_phi):
    phi, c = planted_phi["phi"], planted_phi["codes"]
    w0 = c[:4]
    with torch.no_grad():
        q0 = phi(w0)
    target = ed.turn(q0, 2, yaw=5.0)
    free = ed.gradient_edit(phi, w0, target, steps=300, lr=0.02)
    held = ed.gradient_edit(phi, w0, target, distance=lambda w: (w - w0).pow(2).sum(1), lam=10.0, steps=300, lr=0.02)
    with torch.no_grad():
        err_free, err_start = (phi(free) - target).pow(2).sum(1), (q0 - target).pow(2).sum(1)
    assert (err_free < 0.05 * err_start).all()
    assert ((held - w0).norm(dim=1) < (free - w0).norm(dim=1)).all()


def test_transfer_turn_and_conditional_sampling(planted_phi):
    K, a, b = 3, torch.arange(11.0), -torch.arange(11.0)
    pose, expr, full = (ed.transfer(a, b, K, part) for part in ("pose", "expression", "all"))
    assert torch.equal(pose[3:6], a[3:6]) and torch.equal(pose[:3], b[:3]) and torch.equal(pose[6:], b[6:])
    assert torch.equal(expr[6:9], a[6:9]) and torch.equal(expr[:6], b[:6]) and torch.equal(expr[9:], b[9:])
    assert torch.equal(full, a)
    turned = ed.turn(b.double(), K, yaw=10.0, pitch=2.0, roll=-3.0)
    assert torch.allclose(turned[3:6] - b[3:6].double(), torch.deg2rad(torch.tensor([2.0, -10.0, 3.0], dtype=torch.float64)))
    phi, c = planted_phi["phi"], planted_phi["codes"][:3]
    q_fixed = phi(planted_phi["codes"][10:11]).detach()[0]
    w = ed.conditional_sample(phi, c, q_fixed, "pose", "gradient", steps=200, lr=0.02)
    with torch.no_grad():
        assert (phi(w)[:, 3:6] - q_fixed[3:6]).abs().max() < (phi(c)[:, 3:6] - q_fixed[3:6]).abs().max()
    for bad in (lambda: ed.transfer(a, b, K, "hair"), lambda: ed.edit(phi, c, q_fixed, "newton"),
                lambda: ed.linear_edit(phi, c, q_fixed, damping=-1.0)):
        with pytest.raises(ConfigError):
            bad()
    with pytest.raises(DataError):
        ed.turn(b, K, yaw=math.nan)
    with pytest.raises(DataError):
        ed.linear_edit(phi, c, torch.zeros(5))
    with pytest.raises(DataError):
        phi(torch.zeros(2, 9))  # codes of another size


def test_fit_store_and_edit_through_the_cli(mien_main, tmp_path):
    """`mien control nrsfm fit` on the zoo GAN writes safetensors + json; the stored phi gives the
    same q; `edit` writes a grid; NaN yaw, a GAN of another latent size and a missing model give one
    line and exit 2."""
    from mien.control.nrsfm.gan import NRSfMControl
    from mien.models import checkpoint
    from mien.models.base import build_model

    model_dir = tmp_path / "model"
    code, cap = mien_main("control", "nrsfm", "fit", ZOO_GAN, "--out", str(model_dir), "-n", "48", "--bases",
                               "2", "--steps", "3", "--nrsfm-steps", "50", "--spaces", "w,w+")
    assert code == 0, cap.err
    info = json.loads((model_dir / "nrsfm.json").read_text())
    assert info["spaces"] == ["w", "w+"] and (model_dir / "nrsfm.safetensors").is_file()
    assert not any(p.suffix in (".pt", ".pkl") for p in model_dir.iterdir())
    control = NRSfMControl.load(model_dir)
    assert control.phi("w").n_bases == 2 and control.nrsfm_.mean_shape_.shape == (3, 68)
    grid = tmp_path / "grid.png"
    code, cap = mien_main("control", "nrsfm", "edit", str(model_dir), "--yaw", "20", "--index", "1", "--columns",
                               "3", "--steps", "2", "--out", str(grid))
    assert code == 0, cap.err
    assert grid.is_file() and cap.out.startswith("input")
    if importlib.util.find_spec("mediapipe") is not None:  # a photo: q0 is the Eq. 11 fit of its detected landmarks
        from data_layouts import world
        from PIL import Image

        Image.fromarray(world(1, 128, seed=4)[0][0]).save(tmp_path / "face.png")
        code, cap = mien_main("control", "nrsfm", "edit", str(model_dir), "--image", str(tmp_path / "face.png"),
                              "--start", "landmarks", "--columns", "2", "--steps", "2", "--out", str(grid))
        assert code == 0, cap.err
        assert cap.out.startswith("inverted")
    other = build_model({"name": "stylegan", "image_size": 32, "widths": [16, 16, 8, 8], "z_dim": 16, "w_dim": 16,
                         "mapping_layers": 1})
    other_dir = checkpoint.save(other, tmp_path / "other", {"model": other.config_dict()}, {"model": "stylegan"})
    for args in (("--yaw", "nan"), ("--ckpt", str(other_dir)), ("--space", "s"), ("--start", "landmarks")):
        code, cap = mien_main("control", "nrsfm", "edit", str(model_dir), *args, "--out", str(tmp_path / "g.png"))
        assert code == 2 and len(cap.err.strip().splitlines()) == 1, (args, cap.err)
    code, cap = mien_main("control", "nrsfm", "edit", str(tmp_path / "nothing"), "--out", str(tmp_path / "g.png"))
    assert code == 2 and "no NRSfM model" in cap.err


def test_reproduce_haas_nrsfm_tiny(mien_main, tmp_path):
    out = tmp_path / "hn"
    code, cap = mien_main("reproduce", "haas-nrsfm", "--preset", "tiny", "--out", str(out))
    assert code == 0, cap.err
    results = json.loads((out / "results.json").read_text())
    assert {(r["space"], r["editor"]) for r in results["table1"]} == {
        (s, e) for s in ("z", "w", "w+") for e in ("gradient", "linear", "linear, damped")}
    for r in results["table1"]:
        assert all(math.isfinite(r[c]) and r[c] >= 0 for c in ("L_L(w)", "L_L(w_edit)", "L_phi", "L_R", "L_ID"))
    assert [r["landmarks"] for r in results["world_rotations"]][0] == "exact landmarks"
    assert len(results["yaw_edit"]) == 4
    assert (out / "grids" / "yaw-edit.png").is_file() and (out / "grids" / "landmarks.png").is_file()
    assert "P-III Table 1" in cap.out and (out / "nrsfm" / "nrsfm.json").is_file()


def test_identity_and_lpips_terms_vanish_at_the_start_and_are_differentiable():
    """D(G(w0), G(w0)) = 0 for both terms of Eq. 15, D > 0 for other faces, and the gradient reaches w."""
    import mien
    from mien.control.nrsfm.gan import generated_faces, renderer
    from mien.evaluator import evaluator_for

    model = mien.load(ZOO_GAN).eval().requires_grad_(False)
    evaluator = evaluator_for(32).eval().requires_grad_(False)
    faces = generated_faces(model, evaluator, 3, seed=4)
    render = renderer(model, "w", faces["noise"])
    w0 = faces["w"]
    for term in (ed.identity_distance(render, evaluator, w0), ed.lpips_term(render, evaluator, w0)):
        with torch.no_grad():
            assert term(w0).abs().max() < 1e-5
            assert (term(w0.roll(1, 0)) > 1e-3).all()
        w = (w0 + 0.1).requires_grad_(True)
        term(w).sum().backward()
        assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
