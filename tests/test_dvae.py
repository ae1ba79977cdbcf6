"""Zou thesis ch. 4: the DVAE's loss (Eq. 4.11) and sigma-VAE, label flip and preservation judged by an
independent classifier, C_recon's input, saliency (Eq. 4.12), missing data (§4.8.2), the stratified
folds of the protocol and the verbs' errors."""

import math

import numpy as np
import pytest
import torch

from dvae_helpers import grid_template, planted_meshes
from model_helpers import mien_main  # noqa: F401 (fixtures)
from mien.errors import ConfigError
from mien.experiments.zou_ch4 import stratified_folds, stratified_split
from mien.models.mesh_dvae import DVAE, DVAEConfig, MeshClassifier, MeshClassifierConfig
from mien.models.mesh_dvae import dvae as dvae_module
from mien.models.mesh_dvae.dvae import gaussian_nll, label_nll, sigma_vae_variance
from mien.models.mesh_dvae.missing import SIDES, random_missing, side_mask

TEMPLATE = grid_template(9, 2)
SIZE = {"filters": [8, 8, 16], "K": 3, "hidden": 32}


def dvae(**fields) -> DVAE:
    return DVAE(DVAEConfig(name="dvae", latent=6, **{**SIZE, **fields}), template=TEMPLATE)


def classifier(dvae_model=None, **fields) -> MeshClassifier:
    return MeshClassifier(MeshClassifierConfig(name="mesh_classifier", **{**SIZE, **fields}), template=TEMPLATE,
                          dvae=dvae_model)


def train(model, meshes, y, steps: int, seed: int = 0):
    torch.manual_seed(seed)
    model.fit_data({"mesh": meshes[:16]})
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 2e-3)
    for _ in range(steps):
        i = torch.randint(len(meshes), (16,))
        loss = model.loss({"mesh": meshes[i], "label": y[i]})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_loss_terms_follow_their_formulas():
    torch.manual_seed(0)
    x, x_hat, v = torch.randn(4, 81, 3), torch.randn(4, 81, 3), 1.7
    reference = -torch.distributions.Normal(x_hat, math.sqrt(v)).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(gaussian_nll(x, x_hat, v), reference - 0.5 * 243 * math.log(2 * math.pi), rtol=1e-5)
    logits, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    assert torch.allclose(label_nll(logits, y), -logits.log_softmax(1)[torch.arange(4), y])
    best = sigma_vae_variance(x, x_hat)  # the sigma-VAE's v minimises the Gaussian NLL over v
    assert torch.isclose(best, (x - x_hat).pow(2).mean())
    assert all((gaussian_nll(x, x_hat, best * f).sum() > gaussian_nll(x, x_hat, best).sum()) for f in (0.9, 1.1))


def test_dvae_loss_is_eq_4_11():
    """loss = ||x - f||^2 / 2v + D/2 log v + KL - log p(y) - alpha log q_0(y|x), mean per mesh; alpha only
    scales the classification term and sqrt_v the reconstruction term."""
    meshes, y = planted_meshes(TEMPLATE, 8)
    batch = {"mesh": meshes, "label": y}
    base = dvae()
    base.fit_data(batch)
    terms = {}
    for alpha, sqrt_v in ((0.0, 1.0), (3.0, 1.0), (0.0, 2.0)):
        model = dvae(alpha=alpha, sqrt_v=sqrt_v)
        model.load_state_dict(base.state_dict())  # the same weights and statistics
        torch.manual_seed(1)  # the same eps
        terms[alpha, sqrt_v] = model.loss(batch)
    t = terms[0.0, 1.0]
    assert torch.isclose(t["loss"], t["rec"] + t["kl"] + math.log(2), rtol=1e-5)
    assert torch.isclose(terms[3.0, 1.0]["loss"] - t["loss"], 3 * t["cls"], rtol=1e-4)
    sse = 2 * t["rec"]  # v = 1: rec = SSE / 2
    d = meshes[0].numel()
    assert torch.isclose(terms[0.0, 2.0]["rec"], sse / 8 + 0.5 * d * math.log(4), rtol=1e-4)


def test_missing_data_removes_the_stated_fraction_of_one_side():
    meshes = torch.as_tensor(grid_template(21, 0).vertices)[None].repeat(6, 1, 1)  # x, y on a uniform grid
    mask = side_mask(meshes, torch.arange(6), torch.full((6,), 0.3))
    for s, m in enumerate(mask):
        coord = meshes[0, :, s // 2] if s // 2 < 2 else meshes[0, :, 2]
        position = (coord - coord.min()) / (coord.max() - coord.min())
        if s % 2:
            position = 1 - position
        assert torch.equal(m, position < 0.3), SIDES[s]
    assert torch.allclose(mask[:4].float().mean(1), torch.tensor(6 / 21))  # 6 of 21 grid columns lie below 0.3
    cube = torch.stack(torch.meshgrid(*[torch.linspace(0, 10, 11)] * 3, indexing="ij"), -1).reshape(1, -1, 3)
    drawn = random_missing(cube.repeat(400, 1, 1), 0.6, 0.4, torch.Generator().manual_seed(0))
    share = drawn.float().mean(1)  # on a uniform lattice the share of vertices is the share of the extent
    assert 0.55 < (share == 0).float().mean() < 0.65 and share.max() <= 0.4 + 1 / 11
    assert 0.15 < share[share > 0].mean() < 0.3  # fractions uniform in [0, 0.4]


def test_missing_data_training_keeps_the_full_mesh_as_target(monkeypatch):
    meshes, y = planted_meshes(TEMPLATE, 16)
    model = dvae(missing=1.0, max_missing=0.4)
    model.fit_data({"mesh": meshes})
    seen, targets = [], []
    model.encoder.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    real = dvae_module.gaussian_nll
    monkeypatch.setattr(dvae_module, "gaussian_nll", lambda x, *a: targets.append(x) or real(x, *a))
    torch.manual_seed(0)
    model.loss({"mesh": meshes, "label": y})
    assert torch.equal(targets[0], model.normalise(meshes))
    zeroed = (seen[0] == 0).all(2)
    assert zeroed.any(1).float().mean() > 0.7 and zeroed.float().mean() < 0.45


def test_label_flip_changes_the_independent_classifiers_prediction():
    """Trained on planted data (class 1 = a bump), C calls the sex-changed reconstructions the other class
    and the sex-preserved ones the same class (OSRSR, SSRSR of Tab. 4.1)."""
    meshes, y = planted_meshes(TEMPLATE, 96, effect=8.0)
    test_meshes, test_y = planted_meshes(TEMPLATE, 48, seed=1, effect=8.0)
    torch.manual_seed(0)
    model, c = train(dvae(), meshes, y, 400), train(classifier(), meshes, y, 150)
    with torch.no_grad():
        assert (c.predict(test_meshes) == test_y).float().mean() > 0.95
        assert (model.predict(test_meshes) == test_y).float().mean() > 0.9
        flipped, kept = model.reconstruct(test_meshes, test_y, flip=True), model.reconstruct(test_meshes, test_y)
        assert (c.predict(flipped) == 1 - test_y).float().mean() > 0.85  # 0.94-1.0 over four initialisations
        assert (c.predict(kept) == test_y).float().mean() > 0.9
        error = (kept - test_meshes).norm(dim=2).mean()
        assert error < (test_meshes.mean(0) - test_meshes).norm(dim=2).mean()  # better than the mean mesh
        drawn = model.sample(4, cond=1, generator=torch.Generator().manual_seed(0))
    assert drawn["mesh"].shape == (4, 81, 3) and drawn["label"].tolist() == [1] * 4


def test_c_recon_sees_the_residuals_of_both_reconstructions():
    meshes, y = planted_meshes(TEMPLATE, 6)
    model = dvae()
    model.fit_data({"mesh": meshes})
    c = classifier(model)
    x = c.normalise(meshes)
    with torch.no_grad():
        z = model.posterior(x, model.logits(x).argmax(1))[0]
        zeros = torch.zeros(6, dtype=torch.long)
        want = torch.cat([x - model.generate(z, zeros), x - model.generate(z, zeros + 1)], 2)
        assert torch.allclose(c.inputs(x), want, atol=1e-6)
    assert not any(p.requires_grad for p in c.dvae.parameters())


def test_saliency_is_the_gradient_of_p_y0_maxed_over_coordinates():
    meshes, _ = planted_meshes(TEMPLATE, 2)
    c = classifier().double()
    c.fit_data({"mesh": meshes.double()})
    m = meshes.double()
    sal = c.saliency(m)
    eps, vertex = 1e-5, 40

    def p0(mm):
        return c.logits_of(c.normalise(mm)).softmax(1)[:, 0]

    grads = []
    for coord in range(3):
        d = torch.zeros_like(m)
        d[:, vertex, coord] = eps * c.scale[vertex, coord]  # a step of eps in normalised units
        grads.append(((p0(m + d) - p0(m - d)) / (2 * eps)).abs())
    assert torch.allclose(sal[:, vertex], torch.stack(grads, 1).amax(1), rtol=1e-4)


def test_stratified_folds_keep_the_class_ratio():
    labels = np.array([1] * 470 + [0] * 282)
    folds = stratified_folds(labels, 5, seed=0)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests) == list(range(752))
    for train_idx, test_idx in folds:
        assert abs(labels[test_idx].sum() - 94) <= 1 and set(train_idx).isdisjoint(test_idx)
        t, v = stratified_split(train_idx, labels, 0.2, seed=0)
        assert abs(labels[v].mean() - 470 / 752) < 0.01 and abs(len(v) - 0.2 * len(train_idx)) < 1
    with pytest.raises(ConfigError, match="lower --folds"):
        stratified_folds(np.array([0, 0, 0, 1]), 2, seed=0)


@pytest.mark.parametrize("args,says", [
    (["reproduce", "zou-ch4", "--folds", "1"], "--folds"),
    (["reproduce", "zou-ch4", "--alphas", "1,x"], "--alphas must be a finite number >= 0"),
    (["reproduce", "zou-ch4", "--sqrt-vs", "0"], "--sqrt-vs must be a finite number > 0"),
    (["train", "dvae/tiny", "data.source=world"], "this model trains on meshes"),
    (["train", "dvae/tiny", "model.variant=m3"], "model.variant 'm3' is unknown"),
])
def test_bad_input_is_one_line(args, says, mien_main, tmp_path):
    code, res = mien_main(*args, "--out", tmp_path / "out")
    assert code == 2 and res.err.count("\n") == 1 and says in res.err, res.err


def test_report_gives_mean_and_std_over_folds_and_writes_its_pictures(tmp_path):
    from PIL import Image

    from mien.experiments.zou_ch4 import FRACTIONS
    from mien.experiments.zou_ch4_report import ROWS, write_report

    keys = {k: 0.9 for k in ROWS}
    folds = [{**keys, "OSRSR": 1.0, "RE": 2.0, "alpha": 1.0, "sqrt_v": 1.3,
              "missing": {k: [1.0] * len(FRACTIONS) for k in ("c", "dvae", "c_recon", "vae_c")}},
             {**keys, "OSRSR": 0.5, "RE": 3.0, "alpha": 2.0, "sqrt_v": 1.3,
              "missing": {k: [0.5] * len(FRACTIONS) for k in ("c", "dvae", "c_recon", "vae_c")}}]
    folds[0]["saliency"] = {"C": np.linspace(0, 1, 81), "C_recon": np.ones(81)}
    meshes, y = planted_meshes(TEMPLATE, 4)
    text = write_report(tmp_path, folds, TEMPLATE, meshes, y, "x.yaml", [(1.0, 1.3)], FRACTIONS).read_text()
    assert "| OSRSR (%) | 75.00 +- 35.36 |" in text and "| RE, DVAE sex preservation (mm) | 2.500 +- 0.707 |" in text
    assert "| C | 75.0 |" in text and "fold 1: alpha 2, sqrt(v) 1.3" in text
    assert Image.open(tmp_path / "fig4_6.png").size == (560, 380) and (tmp_path / "saliency.png").is_file()


def test_reproduce_runs_folds_in_processes_and_a_sequential_rerun_reuses_them_exactly(tmp_path):
    import json

    from mien.config import preset_path
    from mien.experiments.zou_ch4 import reproduce

    args = (preset_path("dvae", "tiny"), tmp_path, ["train.max_steps=2"], 2, (1.0,), (1.6,))
    reproduce(*args, progress=False, jobs=2)
    parallel = json.loads((tmp_path / "results.json").read_text())
    stamp = (tmp_path / "runs" / "fold1" / "dvae" / "model.safetensors").stat().st_mtime_ns
    reproduce(*args, progress=False, jobs=1)
    assert json.loads((tmp_path / "results.json").read_text()) == parallel and len(parallel["folds"]) == 2
    assert (tmp_path / "runs" / "fold1" / "dvae" / "model.safetensors").stat().st_mtime_ns == stamp
    assert (tmp_path / "zou-ch4.md").is_file() and (tmp_path / "fig4_6.png").is_file()
