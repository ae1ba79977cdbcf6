"""The semi-supervised label models (M2, CCVAE, JDVAE; Zou thesis ch. 5), their data (labels and the
supervision mask) and their operations (swap, flip, magnitude)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Normal, kl_divergence

from typer.testing import CliRunner

from mien.cli import app
from mien.config import load_yaml, preset_path
from mien.control.swap import flip, magnitude, swap
from mien.data.source import DataConfig, make_dataset
from mien.data.supervision import Supervised, supervision_mask
from mien.data.world import EXPRESSIONS, WorldDataset
from mien.data.world.labels import SMILE_MIN_INTENSITY
from mien.errors import ConfigError
from mien.models import build_model
from mien.models.semisup.common import entropy, kl_gaussians, label_log_likelihood, log_uniform_prior
from mien.metrics.swap import bca
from mien.train import fit, load_run_config
from model_helpers import world_pool

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = {"image_size": 32, "widths": [8, 16, 32], "blocks": 0, "z_dim": 8, "hidden": 32}


def tiny(name: str, **extra):
    torch.manual_seed(0)
    return build_model({"name": name, **TINY, **extra}).eval()


def labelled(batch: dict, supervised) -> dict:
    return {"image": batch["image"], "factors": batch["factors"], "supervised": torch.as_tensor(supervised).bool()}


# --- data ----------------------------------------------------------------------------------------

def test_supervision_mask_hides_the_stated_fraction_deterministically():
    for n, rate in ((1000, 0.2), (257, 0.5), (10, 0.0), (10, 1.0)):
        m = supervision_mask(n, rate, seed=3)
        assert m.dtype == torch.bool and int(m.sum()) == round(rate * n)
        assert torch.equal(m, supervision_mask(n, rate, seed=3))
    assert not torch.equal(supervision_mask(1000, 0.2, 3), supervision_mask(1000, 0.2, 4))
    ds = make_dataset(DataConfig(size=32, n=200, seed=5, supervision=0.2, labels=["glasses", "smile"], cache=False))
    assert isinstance(ds, Supervised) and ds.size == 32 and int(ds.mask.sum()) == 40
    b = ds.batch([3, 7, 11, 150])
    assert torch.equal(b["supervised"], ds.mask[[3, 7, 11, 150]])
    assert [bool(ds[i]["supervised"]) for i in (3, 7)] == ds.mask[[3, 7]].tolist()
    # the labels stay in factors; the images are the world's, unchanged by the derived label
    plain = WorldDataset(200, 32, seed=5).batch([3, 7, 11, 150])
    assert torch.equal(b["image"], plain["image"]) and torch.equal(b["attributes"], plain["attributes"])
    f = b["factors"]
    smile = (f["expression"] == EXPRESSIONS.index("happy")) & (f["intensity"] >= SMILE_MIN_INTENSITY)
    assert torch.equal(f["smile"], smile.long()) and "smile" in [x.name for x in ds.factors]


def test_bad_supervision_rate_and_unknown_labels_are_one_line_errors():
    for rate in (1.5, -0.1, "many"):
        with pytest.raises(ConfigError, match=r"data.supervision must lie in \[0, 1\]") as e:
            make_dataset(DataConfig(size=32, n=50, supervision=rate))
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown label 'moustache'"):
        make_dataset(DataConfig(size=32, n=50, labels=["moustache"]))
    plain = WorldDataset(50, 32)
    with pytest.raises(ConfigError, match="model.labels names 'smile', which the data does not label") as e:
        build_model({"name": "jdvae", **TINY, "labels": ["smile"]}, data=plain)
    assert "\n" not in str(e.value) and "data.labels" in str(e.value)
    with pytest.raises(ConfigError, match="binary"):
        build_model({"name": "m2", **TINY, "labels": ["hair_style"]}, data=plain)
    model = build_model({"name": "ccvae", **TINY, "labels": ["smile"]})
    with pytest.raises(ConfigError, match="the data has no label 'smile'"):
        model.loss(plain.batch(range(4)))


def test_mien_swap_writes_a_grid_and_refuses_two_faces_with_the_same_label(tmp_path):
    run = tmp_path / "run"
    fit(load_run_config(preset_path("jdvae", "tiny"), ["train.max_steps=2", "data.n=64"]), run, progress=False)
    glasses = WorldDataset(40, 32, seed=12345, fixed={"pitch": 0.0, "roll": 0.0}).draw(range(40))["glasses"]
    with_, without = int((glasses == 1).nonzero()[0]), [int(i) for i in (glasses == 0).nonzero()[:2, 0]]
    png = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["swap", str(run), "--a", str(with_), "--b", str(without[0]), "--out", str(png)])
    assert result.exit_code == 0 and png.stat().st_size > 0, result.output
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "mien", "swap", str(run), "--a", str(without[0]), "--b", str(without[1]),
                        "--out", str(tmp_path / "x.png")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "both have glasses = 0" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    bad = CliRunner().invoke(app, ["train", "jdvae/tiny", "data.supervision=1.5", "--out", str(tmp_path / "y")])
    assert isinstance(bad.exception, ConfigError) and "data.supervision" in str(bad.exception)
    assert "\n" not in str(bad.exception)


# --- closed-form terms -----------------------------------------------------------------------------

def test_entropy_and_kl_terms_equal_their_formulas():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 2, 2, generator=g)
    q = Categorical(logits=logits)
    assert torch.allclose(entropy(logits), q.entropy().sum(1), atol=1e-6)
    # the y-terms of the M2 bound: sum_y q(y|x)(-log p(y)) - H(q) = KL(q(y|x) || uniform p(y))
    uniform = Categorical(probs=torch.full((5, 2, 2), 0.5))
    assert torch.allclose(-log_uniform_prior(2) - entropy(logits), kl_divergence(q, uniform).sum(1), atol=1e-6)
    y = torch.tensor([[0., 1.], [1., 1.], [0., 0.], [1., 0.], [0., 1.]])
    assert torch.allclose(label_log_likelihood(logits, y), q.log_prob(y.long()).sum(1), atol=1e-6)
    mu, logvar = torch.randn(5, 3, 4, generator=g), torch.randn(5, 3, 4, generator=g)
    pm, plv = torch.randn(5, 3, 4, generator=g), torch.randn(5, 3, 4, generator=g)
    direct = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(pm, (0.5 * plv).exp())).sum(-1)
    assert torch.allclose(kl_gaussians(mu, logvar, pm, plv), direct, atol=1e-5)


@pytest.mark.parametrize("prior", ["pa1", "pa2"])
def test_the_u_term_of_eq_5_4_weighs_each_case(prior):
    model = tiny("jdvae", prior=prior, u_dim=4, labels=["glasses", "beard"])
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(6, 2, 4, generator=g), torch.randn(6, 2, 4, generator=g) * 0.5
    y = torch.tensor([[1., 0.], [0., 1.], [1., 1.], [0., 0.], [1., 0.], [0.3, 0.7]])
    std = (0.5 * logvar).exp()
    kl1 = kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).sum(-1)
    kl0 = kl_divergence(Normal(mu, std), Normal(0.0, math.sqrt(0.1))).sum(-1) if prior == "pa2" else 0 * kl1
    expected = (y * 0.01 * kl1 + (1 - y) * 1.0 * kl0).sum(1)  # w_1 = 1/100, w_0 = 1 (Zou §5.4)
    assert torch.allclose(model.feature_kl(mu, logvar, y), expected, atol=1e-5)


def test_ccvae_q_y_given_x_is_the_mean_classifier_probability():
    model = tiny("ccvae", zc_dim=3, labels=["glasses", "beard"], classifier_samples=20000)
    mu, logvar = torch.randn(4, 2, 3), torch.full((4, 2, 3), -1.0)
    y = torch.tensor([[1., 0.], [0., 0.], [1., 1.], [0., 1.]])
    torch.manual_seed(0)
    estimate = model.log_q_y_given_x(mu, logvar, y).exp()
    zc = mu + torch.exp(0.5 * logvar) * torch.randn(20000, 4, 2, 3)
    p1 = torch.sigmoid((zc * model.classifier_weight).sum(-1) + model.classifier_bias)
    direct = torch.where(y > 0, p1, 1 - p1).prod(-1).mean(0)
    assert torch.allclose(estimate, direct, rtol=0.03)


# --- the architecture ---------------------------------------------------------------------------------

def test_ccvae_presets_are_joy_et_al_and_ccvae2_is_jdvaes_architecture():
    """ccvae/* is the thesis's CCVAE row (Joy et al.'s networks, one z_c value, 45 latents, no AdaIN);
    ccvae2/* CCVAE's structure on JDVAE's AdaIN decoder (Zou §5.4)."""
    from mien.nn.adain import AdaIN, TokenDecoder
    from mien.nn.joy import JoyDecoder, JoyEncoder

    joy, jd = (build_model(dict(load_yaml(preset_path(f, "small"))["model"])) for f in ("ccvae", "ccvae2"))
    assert isinstance(joy.trunk, JoyEncoder) and isinstance(joy.decoder, JoyDecoder)
    assert not any(isinstance(m, AdaIN) for m in joy.modules()) and not any(isinstance(m, nn.GroupNorm) for m in joy.modules())
    assert joy.config.zc_dim == 1 and joy.config.zc_dim + joy.config.z_dim == 45
    assert isinstance(jd.decoder, TokenDecoder) and any(isinstance(m, AdaIN) for m in jd.modules())
    torch.manual_seed(0)
    zc, z = torch.randn(2, 1, 1), torch.randn(2, 44)
    with torch.no_grad():  # the decoder reads z_c: p(x | z_c, z_\\c)
        x0, x1 = joy.decode_parts({"zc": zc, "z": z}), joy.decode_parts({"zc": zc + 3, "z": z})
    s = joy.config.image_size
    assert x0.shape == (2, 3, s, s) and (x0 - x1).abs().mean() > 1e-4
    with pytest.raises(ConfigError, match="architecture joy has no AdaIN") as e:
        build_model({"name": "ccvae", **TINY, "architecture": "joy"})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("extra", [{}, {"tokens": False}, {"adain": False}, {"labels": ["glasses", "beard"]}])
def test_pa1_decodes_the_same_image_for_any_u_when_y_is_0(extra):
    model = tiny("jdvae", prior="pa1", u_dim=4, **extra)
    n, L = 3, model.n_labels
    z, y = torch.randn(n, 8), torch.zeros(n, L)
    with torch.no_grad():
        images = [model.decode_parts({"y": y, "z": z, "u": torch.randn(n, L, 4) * s}) for s in (0.0, 1.0, 10.0)]
        assert all(torch.equal(images[0], im) for im in images[1:])
        y1 = torch.ones(n, L)  # with y = 1 the features matter
        assert not torch.allclose(model.decode_parts({"y": y1, "z": z, "u": torch.randn(n, L, 4)}),
                                  model.decode_parts({"y": y1, "z": z, "u": torch.randn(n, L, 4)}))
    pa2 = tiny("jdvae", prior="pa2", u_dim=4, **extra)  # PA2 does not gate u
    with torch.no_grad():
        assert not torch.allclose(pa2.decode_parts({"y": y, "z": z, "u": torch.randn(n, L, 4)}),
                                  pa2.decode_parts({"y": y, "z": z, "u": torch.randn(n, L, 4)}))


def test_tokens_and_adain_are_the_switches_of_the_ablations():
    full, no_tokens, no_adain = tiny("jdvae"), tiny("jdvae", tokens=False), tiny("jdvae", adain=False)
    assert len(full.decoder.image_tokens) == 3 and full.decoder.scalar_tokens.shape == (1, 2)
    assert full.decoder.image_tokens[0].shape == (1, 2, 1, 4, 4)  # one token image per residual block and class
    assert not hasattr(no_tokens.decoder, "image_tokens")
    assert sum("norm1.fc" in k for k, _ in full.decoder.named_parameters()) == 6  # weight and bias per block
    assert hasattr(full.decoder.out_norm, "fc") and not hasattr(no_adain.decoder.out_norm, "fc")
    assert not any(".fc." in k and "blocks" in k for k, _ in no_adain.decoder.named_parameters())
    z = torch.randn(2, 8)
    with torch.no_grad():  # the tokens carry y: two labels decode differently even at u = 0
        y0, y1 = torch.zeros(2, 1), torch.ones(2, 1)
        u = torch.zeros(2, 1, 16)
        assert not torch.allclose(full.decode_parts({"y": y0, "z": z, "u": u}), full.decode_parts({"y": y1, "z": z, "u": u}))


# --- M2: the Gumbel and enumerated treatments ---------------------------------------------------------

def test_m2_gumbel_and_enumerated_bounds_agree():
    batch = world_pool(512)
    idx = torch.arange(4)
    data = {"image": batch["image"][idx], "factors": {k: v[idx] for k, v in batch["factors"].items()}}
    # beta = 1 so that the KL and entropy terms weigh as much as the reconstruction
    enum = tiny("m2", unlabelled="enumerate", beta=1.0)
    gumbel = tiny("m2", unlabelled="gumbel", gumbel_hard=True, temperature=0.5, beta=1.0)
    gumbel.load_state_dict(enum.state_dict())
    # supervision rate 1: every label is shown, and both treatments compute the same bound
    torch.manual_seed(7)
    a = enum.loss(labelled(data, [True] * 4))["loss"]
    torch.manual_seed(7)
    b = gumbel.loss(labelled(data, [True] * 4))["loss"]
    assert torch.allclose(a, b)
    # hidden labels: one hard Gumbel sample y ~ q(y|x) per face estimates U(x) = sum_y q(y|x) L(x, y) - beta H
    reps = 250
    rep = {"image": data["image"].repeat(reps, 1, 1, 1), "factors": {k: v.repeat(reps) for k, v in data["factors"].items()},
           "supervised": torch.zeros(4 * reps, dtype=torch.bool)}
    torch.manual_seed(0)
    with torch.no_grad():
        exact = float(enum.loss(rep)["loss"])
        estimate = float(torch.stack([gumbel.loss(rep)["loss"] for _ in range(4)]).mean())
        h = enum.trunk(rep["image"])
        per_y = [float(enum.bound(rep["image"], h, torch.full((4 * reps, 1), v))["total"].mean()) for v in (0.0, 1.0)]
        q = torch.softmax(enum.label_logits(h[:4]), -1)
        direct = (q[:, 0, 0] * enum.bound(rep["image"], h, torch.zeros(4 * reps, 1))["total"].view(reps, 4).mean(0)
                  + q[:, 0, 1] * enum.bound(rep["image"], h, torch.ones(4 * reps, 1))["total"].view(reps, 4).mean(0)
                  - entropy(enum.label_logits(h[:4]))).mean()
    assert abs(per_y[1] - per_y[0]) > 0.02  # the value of y matters, so a wrong weighting would show
    assert abs(exact - float(direct)) < 0.003  # the enumerated bound is sum_y q L - beta H
    assert abs(estimate - exact) < 0.003, (estimate, exact)


# --- operations ----------------------------------------------------------------------------------------

def test_swap_exchanges_the_label_parts_and_rejects_equal_labels():
    model = tiny("jdvae")
    pool = world_pool(512)
    g = pool["factors"]["glasses"]
    i, j = int((g == 1).nonzero()[0]), int((g == 0).nonzero()[0])
    a, b = pool["image"][i:i + 1], pool["image"][j:j + 1]
    out = swap(model, a, b, "glasses", torch.ones(1, 1), torch.zeros(1, 1))
    pa, pb = model.encode_parts(a, torch.ones(1, 1)), model.encode_parts(b, torch.zeros(1, 1))
    with torch.no_grad():
        want_a = model.decode_parts({"y": pb["y"], "z": pa["z"], "u": pb["u"]})  # d(0, z_g, u_w)
        want_b = model.decode_parts({"y": pa["y"], "z": pb["z"], "u": pa["u"]})  # d(1, z_w, u_g)
    assert torch.allclose(out["a"], want_a) and torch.allclose(out["b"], want_b)
    with pytest.raises(ConfigError, match="both have glasses = 1") as e:
        swap(model, a, a, "glasses", torch.ones(1, 1), torch.ones(1, 1))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no label 'smile'"):
        swap(model, a, b, "smile")
    ccvae = tiny("ccvae", zc_dim=2)
    out = swap(ccvae, a, b, "glasses", torch.ones(1, 1), torch.zeros(1, 1))
    pa, pb = ccvae.encode_parts(a), ccvae.encode_parts(b)
    with torch.no_grad():
        assert torch.allclose(out["b"], ccvae.decode_parts({"zc": pa["zc"], "z": pb["z"]}))


def test_flip_and_magnitude():
    model = tiny("jdvae", prior="pa2")
    x = world_pool(512)["image"][:3]
    y = torch.tensor([[1.], [0.], [1.]])
    parts = model.encode_parts(x, y)
    with torch.no_grad():
        flipped = model.decode_parts({"y": 1 - y, "z": parts["z"], "u": torch.zeros_like(parts["u"])})
        assert torch.allclose(flip(model, x, "glasses", y), flipped)
        images = magnitude(model, x, [0.0, 1.0, 2.0], "glasses", y)
        assert images.shape == (3, 3, 3, 32, 32)
        assert torch.allclose(images[1], model.decode_parts(parts), atol=1e-6)
        assert torch.allclose(images[2], model.decode_parts({**parts, "u": 2 * parts["u"]}), atol=1e-6)
    with pytest.raises(ConfigError, match=r"outside \[0, 2\]"):
        magnitude(model, x, [2.5], "glasses", y)
    with pytest.raises(ConfigError, match="no label features"):
        magnitude(tiny("m2"), x, [1.0], "glasses", y)


# --- training -------------------------------------------------------------------------------------------

def test_a_tiny_jdvae_trained_semi_supervised_predicts_glasses_better_than_chance():
    """100 steps with half of the labels hidden (Gumbel-softmax for those faces); frontal neutral
    faces without hats or beards, so that glasses are the salient label. (At the thesis's rate
    0.2 a model this small needs about five times the steps: it sees a fifth of the labels.)"""
    frontal = {"yaw": 0.0, "hat": "no", "beard": "no", "expression": "neutral"}
    pool = world_pool(512, **frontal)
    sup = supervision_mask(512, 0.5, seed=0)
    torch.manual_seed(0)
    model = build_model({"name": "jdvae", **TINY, "u_dim": 4})
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(1)
    history = []
    for step in range(100):
        idx = torch.randint(512, (32,), generator=gen)
        batch = {"image": pool["image"][idx], "factors": {k: v[idx] for k, v in pool["factors"].items()},
                 "supervised": sup[idx]}
        out = model.loss(batch, step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        history.append(float(out["rec"]))
    model.eval()
    held = WorldDataset(256, 32, seed=99, fixed={"pitch": 0, "roll": 0, **frontal}).batch(range(256))
    with torch.no_grad():
        pred = model.predict(held["image"])[:, 0]
    score = bca(held["factors"]["glasses"].numpy(), pred.numpy())
    assert score > 0.65, score  # chance is 0.5
    assert sum(history[-10:]) < 0.7 * sum(history[:10])  # and it learnt to reconstruct


class _Recorder(torch.nn.Module):
    """A planted evaluator: glasses logit +1 exactly for the images in ``marked``, -1 otherwise;
    features the flattened image."""

    def __init__(self, marked: torch.Tensor):
        super().__init__()
        self.marked = marked

    def forward(self, images):
        hit = ((images[:, None] - self.marked[None]).flatten(2).abs().amax(2) < 1e-6).any(1)
        from mien.evaluator.network import ATTRIBUTES

        logits = torch.zeros(len(images), len(ATTRIBUTES))
        logits[:, ATTRIBUTES.index("glasses")] = hit.float() * 2 - 1
        return {"attributes": logits}

    def features(self, images):
        return images.flatten(1)


def test_swap_scores_score_the_face_that_gained_the_label_for_sr_plus():
    from mien.control.swap import swap_scores_of

    model = tiny("jdvae")
    pool = world_pool(512)
    g = pool["factors"]["glasses"]
    with_, without = pool["image"][g == 1][:3], pool["image"][g == 0][:3]
    out = swap(model, with_, without, "glasses", torch.ones(3, 1), torch.zeros(3, 1))
    scores = swap_scores_of(model, with_, without, "glasses", torch.ones(3, 1), torch.zeros(3, 1),
                            evaluator=_Recorder(out["b"]))  # b: the face without glasses given them
    assert scores["sr_plus"] == 1.0 and scores["sr_minus"] == 1.0
    cfd = ((with_ - out["b"]).flatten(1).norm(dim=1).mean() + (without - out["a"]).flatten(1).norm(dim=1).mean()) / 2
    assert scores["cfd"] == pytest.approx(float(cfd), rel=1e-5)
    flipped = swap_scores_of(model, with_, without, "glasses", torch.ones(3, 1), torch.zeros(3, 1),
                             evaluator=_Recorder(out["a"]))
    assert flipped["sr_plus"] == 0.0 and flipped["sr_minus"] == 0.0
    with pytest.raises(ConfigError, match="first faces must carry the label"):
        swap_scores_of(model, without, with_, "glasses", torch.zeros(3, 1), torch.ones(3, 1), evaluator=_Recorder(out["a"]))
