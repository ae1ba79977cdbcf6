"""CVQVAE (Zou thesis ch. 6): the entropy KL, the straight-through Gumbel estimator, feature gating,
the two-step schedule, training, swaps, and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

import mien
from mien.config import preset_path
from mien.control.swap import magnitude, swap
from mien.errors import ConfigError
from mien.models import build_model
from mien.models.base import Phase
from mien.models.checkpoint import read_weights
from mien.models.semisup.cvqvae import entropy_kl, gate_features
from mien.train import fit, load_run_config
from model_helpers import mien_main, world_pool  # noqa: F401 (fixtures)

TINY = {"image_size": 32, "widths": [8, 16, 32], "encoder_widths": [8, 16], "blocks": 0, "hidden": 32,
        "num_codes": 16, "code_dim": 4, "feature_dim": 4}


def tiny(**extra):
    torch.manual_seed(0)
    return build_model({"name": "cvqvae", **TINY, **extra})


def faces(n=16, supervised=True):
    pool = world_pool()
    return {"image": pool["image"][:n], "factors": {k: v[:n] for k, v in pool["factors"].items()},
            "supervised": torch.full((n,), supervised)}


# --- the posterior and its KL (Eq. 6.4, §6.3.3) ----------------------------------------------------

def test_entropy_kl_equals_kl_to_the_uniform_prior_and_the_posterior_uses_unsquared_distances():
    torch.manual_seed(1)
    logits = torch.randn(3, 4, 4, 7) * 2
    direct = kl_divergence(Categorical(logits=logits), Categorical(probs=torch.full((7,), 1 / 7))).flatten(1).sum(1)
    assert torch.allclose(entropy_kl(logits), direct, atol=1e-5)
    assert torch.allclose(entropy_kl(torch.zeros(2, 8, 8, 512)), torch.zeros(2), atol=1e-4)  # q uniform
    one_hot = torch.full((1, 8, 8, 512), -1e4)
    one_hot[..., 3] = 0
    assert float(entropy_kl(one_hot)) == pytest.approx(64 * math.log(512), rel=1e-5)  # sum_ij log K
    model = tiny()
    z_e = torch.randn(2, 4, 8, 8)
    dist = torch.cdist(z_e.permute(0, 2, 3, 1).reshape(-1, 4), model.codebook.detach())
    assert torch.allclose(model.code_logits(z_e).reshape(-1, 16), -dist, atol=1e-4)  # -||E - e_k||, not squared
    scaled = tiny(code_scale=3.0)  # the same codebook (seed 0); logits -s ||E - e_k||
    assert torch.allclose(scaled.code_logits(z_e).reshape(-1, 16), -3 * dist, atol=1e-4)


def test_straight_through_gumbel_copies_the_gradient_to_z_e_and_not_to_the_codebook():
    model = tiny()
    z_e = torch.randn(2, 4, 8, 8, requires_grad=True)
    terms = model.latent_terms(z_e)
    z = terms["z"].view(2, 4, 8, 8)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.cdist(rows, model.codebook.detach()).min(1).values.max() < 1e-4  # every position is a code
    w = torch.randn_like(z)
    gz, gcode = torch.autograd.grad((z * w).sum(), [z_e, model.codebook], allow_unused=True)
    assert torch.equal(gz, w) and gcode is None
    # the KL, codebook and commitment terms reach the codebook and z_e
    extra = torch.autograd.grad((terms["kl"] + terms["codebook"] + terms["commitment"]).sum(), [z_e, model.codebook])
    assert all(g.abs().sum() > 0 for g in extra)
    # sampled codes follow q: with z_e on code 0 and far from the rest, every sample is code 0
    model.codebook.data[1:] += 50
    on_code = model.codebook.detach()[0][None, :, None, None].expand(1, 4, 8, 8)
    assert torch.allclose(model.latent_terms(on_code)["z"].view(1, 4, 8, 8), on_code)
    assert float(model.latent_terms(on_code)["top"]) == pytest.approx(1.0)  # q one-hot on code 0
    model.codebook.data.zero_()  # every code at the same distance: q uniform, max_k q = 1 / K
    assert float(model.latent_terms(on_code)["top"]) == pytest.approx(1 / 16)


# --- gating (§6.3.1) ------------------------------------------------------------------------------

def test_gating_zeroes_glasses_features_when_y_is_0_and_splits_two_sided_ones():
    c = torch.randn(4, 2, 6)
    y = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    g = gate_features(c, y, torch.tensor([False, True])).view(4, 2, 6)
    assert torch.equal(g[:, 0], y[:, :1] * c[:, 0])  # glasses type: y c
    assert torch.equal(g[:, 1, :3], (1 - y[:, 1:]) * c[:, 1, :3]) and torch.equal(g[:, 1, 3:], y[:, 1:] * c[:, 1, 3:])
    model = tiny().eval()
    x = faces(4)["image"]
    with torch.no_grad():
        parts = model.encode_parts(x, torch.zeros(4, 1))
        other = {**parts, "c": torch.randn_like(parts["c"]) * 5}
        assert torch.equal(model.decode_parts(parts), model.decode_parts(other))  # y = 0: c does not reach D
        parts1 = {**parts, "y": torch.ones(4, 1)}
        assert not torch.allclose(model.decode_parts(parts1), model.decode_parts({**other, "y": torch.ones(4, 1)}))
        # magnitude lambda = 0 with y = 1 decodes as c = 0; a swap gives the y = 0 face none of the donor's c
        assert torch.allclose(magnitude(model, x, [0.0], y=torch.ones(4))[0],
                              model.decode_parts({**model.encode_parts(x, torch.ones(4, 1)), "c": torch.zeros(4, 1, 4)}))
        out = swap(model, x[:2], x[2:], y_a=torch.ones(2), y_b=torch.zeros(2))
        pa, pb = model.encode_parts(x[:2], torch.ones(2, 1)), model.encode_parts(x[2:], torch.zeros(2, 1))
        assert torch.allclose(out["b"], model.decode_parts({**pb, "y": torch.ones(2, 1), "c": pa["c"]}))
        assert torch.allclose(out["a"], model.decode_parts({**pa, "y": torch.zeros(2, 1), "c": torch.zeros(2, 1, 4)}))
    # two labels (§6.4): glasses (y c) and smile ([(1 - y) c_0, y c_1]); y = (0, 1) reads only smile's c_1
    both = tiny(labels=["glasses", "smile"], two_sided=["smile"]).eval()
    with torch.no_grad():
        parts = both.encode_parts(x, torch.tensor([[0.0, 1.0]]).expand(4, -1))
        assert parts["c"].shape == (4, 2, 8)
        moved = parts["c"].clone()
        moved[:, 0] += 3
        moved[:, 1, :4] += 3
        assert torch.allclose(both.decode_parts(parts), both.decode_parts({**parts, "c": moved}))
        moved[:, 1, 4:] += 3
        assert not torch.allclose(both.decode_parts(parts), both.decode_parts({**parts, "c": moved}))


# --- two-step training (§6.3.4) -------------------------------------------------------------------

def test_phases_freeze_c_phi_and_the_tokens_for_the_named_steps():
    model = tiny(freeze_steps=3)
    names = set(model.two_step_names())
    assert names == {n for n, _ in model.named_parameters()
                     if n.startswith(("feature_net.", "feature_head.")) or "tokens" in n}
    assert any(n.startswith("encoder.tokens") for n in names) and "decoder.scalar_tokens" in names
    groups = {g: {id(p) for p in ps} for g, ps in model.param_groups().items()}
    params = dict(model.named_parameters())
    assert groups["unfrozen"] == {id(p) for n, p in params.items() if n not in names}
    assert groups["model"] == {id(p) for p in params.values()}
    due = [[p.group for p in model.phases() if p.due(s)] for s in range(6)]
    assert due == [["unfrozen"]] * 3 + [["model"]] * 3
    assert [p.group for p in tiny().phases()] == ["model"]
    with pytest.raises(ConfigError, match="start <= s < stop"):
        Phase("model", model.loss, start=3, stop=3)


def test_two_step_training_starts_from_variant_d_and_keeps_exactly_c_phi_and_the_tokens_frozen(tmp_path):
    def run(steps, out, **model):
        cfg = load_run_config(preset_path("cvqvae", "tiny"), [f"train.max_steps={steps}", "data.n=64", "train.save_every=0"])
        cfg.model.update(model)
        return read_weights(fit(cfg, tmp_path / out, progress=False))

    d = run(2, "d", latent="gaussian", adain=True, z_dim=6)
    e1, e3, e4 = (run(s, f"e{s}", pretrained=str(tmp_path / "d"), freeze_steps=3) for s in (1, 3, 4))
    frozen = set(tiny(freeze_steps=3).two_step_names())
    assert all(torch.equal(e3[n], d[n]) for n in frozen)  # C_phi and the tokens come from variant D
    unchanged = {n for n in e1 if torch.equal(e1[n], e3[n]) and e1[n].is_floating_point()}
    assert unchanged == frozen  # steps 1 and 2 moved every other weight and none of these
    assert all(not torch.equal(e4[n], e3[n]) for n in frozen)  # step 3 trains all
    meta = mien.models.checkpoint.read_meta(tmp_path / "e3")
    assert meta["statistics"]["pretrained"]["copied"] == len(frozen)


# --- training ------------------------------------------------------------------------------------

def test_a_tiny_model_trains_and_lowers_its_loss():
    model = tiny().train()
    batch = faces(16, supervised=False)
    batch["supervised"][:4] = True
    model.fit_data(batch)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(50):
        terms = model.loss(batch, step)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        first = first if first is not None else {k: float(v) for k, v in terms.items()}
    assert float(terms["mse"]) < 0.5 * first["mse"]
    assert float(terms["loss"]) < 0.6 * first["loss"]
    model.eval()
    with torch.no_grad():
        rec = model.reconstruct(batch["image"])
        shuffled = batch["image"][torch.randperm(16, generator=torch.Generator().manual_seed(0))]
        assert (rec - batch["image"]).pow(2).mean() < (shuffled - batch["image"]).pow(2).mean()
        drawn = model.sample(3, cond=[1], generator=torch.Generator().manual_seed(0))
    assert set(drawn) == {"image", "label"} and drawn["image"].shape == (3, 3, 32, 32)
    assert drawn["label"].tolist() == [1, 1, 1]
    assert model.feature_updates.sum() > 0 and not torch.equal(model.feature_var, torch.ones_like(model.feature_var))


# --- bad inputs ----------------------------------------------------------------------------------

def test_bad_cvqvae_inputs_are_one_line_errors(tmp_path, mien_main):
    for extra, match in (({"latent": "flow"}, "model.latent 'flow' is unknown"),
                         ({"posterior": "hard"}, "model.posterior 'hard' is unknown"),
                         ({"two_sided": ["smile"]}, "model.two_sided names 'smile'"),
                         ({"unlabelled": "enumerate"}, "Gumbel-softmax"),
                         ({"num_codes": 1}, "model.num_codes must be an integer >= 2"),
                         ({"freeze_steps": -1}, "model.freeze_steps must be an integer >= 0"),
                         ({"encoder_widths": [8, 8, 8, 8, 8, 8]}, "does not halve")):
        with pytest.raises(ConfigError, match=match) as e:
            tiny(**extra)
        assert "\n" not in str(e.value)
    model = tiny()
    batch = faces(4)
    del batch["factors"]["glasses"]
    with pytest.raises(ConfigError, match="the data has no label 'glasses'"):
        model.loss(batch)
    code, out = mien_main("train", "cvqvae/tiny", "model.pretrained=" + str(tmp_path / "none"), "data.n=32",
                          "--out", tmp_path / "run", "--no-progress")
    assert code == 2 and "does not exist" in out.err and len(out.err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="same labels"):  # a checkpoint that is not variant D's
        cfg = load_run_config(preset_path("vqvae", "tiny"), ["train.max_steps=1", "data.n=32", "train.save_every=0"])
        vq = fit(cfg, tmp_path / "vq", progress=False)
        tiny(pretrained=str(vq)).fit_data(faces(4))


def test_variant_c_preset_is_the_small_preset_that_zou_ch6_trains_once_for_two_rows():
    import yaml

    from mien.config import PRESETS

    assert yaml.safe_load((PRESETS / "cvqvae/variant_c.yaml").read_text()) == yaml.safe_load((PRESETS / "cvqvae/small.yaml").read_text())
