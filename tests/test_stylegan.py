"""The StyleGAN2 family: modulation, resampling, losses against their formulas, the phases through
the engine (bit-identical resume across the lazy regularisers), ADA, cGAN and InfoGAN heads, and a
tiny GAN on the world that gets closer to it."""

import math

import pytest
import torch
import torch.nn.functional as F
from model_helpers import world_pool
from safetensors.torch import load_file

import mien
from mien.errors import ConfigError
from mien.metrics.fid import fid_mien
from mien.models.base import build_model
from mien.models.stylegan import augment as ada
from mien.models.stylegan.losses import code_entropy, d_logistic, g_nonsaturating, info_nll, r1_penalty
from mien.nn.equalized import EqualLinear, fir_kernel, upsample2x
from mien.nn.gan_discriminator import minibatch_stddev
from mien.nn.stylegan import ModulatedConv2d
from mien.train import fit, run_config

TINY = {"name": "stylegan", "image_size": 32, "widths": [16, 16, 8, 8], "z_dim": 16, "w_dim": 16,
        "mapping_layers": 2}


def gan(**fields):
    torch.manual_seed(0)
    return build_model({**TINY, **fields})


def test_demodulation_keeps_unit_output_variance():
    """Karras et al. 2020, Sec. 2.2 (Haas Eq. 2.17): for unit-variance i.i.d. inputs the demodulated
    weights give outputs of unit standard deviation whatever the style (away from the borders);
    without demodulation the output scales with s."""
    torch.manual_seed(0)
    x = torch.randn(4, 64, 32, 32)
    s = torch.rand(4, 64) * 3 + 0.1  # positive styles of very different scales
    conv, plain = ModulatedConv2d(64, 32, 3, 8), ModulatedConv2d(64, 32, 3, 8, demodulate=False)
    with torch.no_grad():
        y = conv(x, s)[:, :, 1:-1, 1:-1]
        assert y.std(dim=(2, 3)).sub(1).abs().max() < 0.1
        assert torch.allclose(conv(x, 3 * s), conv(x, s), atol=1e-5)
        assert float(plain(x, 3 * s).std() / plain(x, s).std()) == pytest.approx(3, rel=1e-4)


@pytest.mark.parametrize("resample", ["fir", "bilinear"])
def test_fused_and_non_fused_modulation_agree(resample):
    model = gan(resample=resample)
    with torch.no_grad():
        z = torch.randn(3, 16)
        ws, noise = model.broadcast(model.map(z)), model.noise_maps(3)
        a = model.synthesize(ws, noise)
        model.synthesis.set_fused(True)
        b = model.synthesize(ws, noise)
    assert a.shape == (3, 3, 32, 32)
    assert torch.allclose(a, b, atol=1e-5)


def test_fir_upsampling_is_the_upfirdn_formula():
    """up=2 with [1, 3, 3, 1]: zero insertion then the filter times 4; a constant image stays constant
    in the interior and a single impulse spreads into the 4 x 4 outer product of the taps / 16 * 4."""
    k = fir_kernel()
    const = torch.ones(1, 1, 8, 8)
    assert torch.allclose(upsample2x(const, "fir", k)[:, :, 2:-2, 2:-2], torch.ones(1, 1, 12, 12))
    impulse = torch.zeros(1, 1, 4, 4)
    impulse[0, 0, 1, 1] = 1
    out = upsample2x(impulse, "fir", k)[0, 0]
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert torch.allclose(out[1:5, 1:5], torch.outer(taps, taps) / 64 * 4)
    assert math.isclose(float(out.sum()), 4.0, rel_tol=1e-6)


def test_equalised_linear_scales_at_run_time():
    torch.manual_seed(0)
    layer = EqualLinear(256, 256, lr_mul=0.01)
    assert layer.weight.std() > 50  # stored as N(0, 1) / lr_mul
    x = torch.randn(512, 256)
    assert abs(float(layer(x).std()) - 1) < 0.05


def test_r1_is_the_analytic_gradient_penalty():
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    a = torch.randn(3, 4, 4)
    assert torch.allclose(r1_penalty((x * a).flatten(1).sum(1), x), a.pow(2).sum())  # D linear: grad = a
    assert torch.allclose(r1_penalty(0.5 * x.pow(2).flatten(1).sum(1), x), x.detach().pow(2).flatten(1).sum(1).mean())


def test_logistic_losses_are_their_formulas():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    assert torch.allclose(d_logistic(real, fake), expected)
    assert torch.allclose(g_nonsaturating(fake), -torch.log(torch.sigmoid(fake)).mean())


def test_minibatch_stddev_appends_the_group_std():
    x = torch.stack([torch.full((2, 3, 3), v) for v in (0.0, 0.0, 2.0, 2.0)])
    out = minibatch_stddev(x, group=2)
    assert out.shape == (4, 3, 3, 3)
    assert torch.allclose(out[:, 2], torch.ones(4, 3, 3), atol=1e-4)  # groups {x0, x2}, {x1, x3} (StyleGAN's strided grouping): std 1
    assert minibatch_stddev(torch.randn(6, 4, 2, 2), group=4).shape == (6, 5, 2, 2)  # group 3 divides 6


def test_truncation_and_latent_spaces():
    model = gan()
    model.w_avg.normal_()
    ws = model.broadcast(model.map(torch.randn(2, 16)))
    assert torch.allclose(model.truncate(ws, 0.0), model.w_avg.expand_as(ws))
    assert torch.equal(model.truncate(ws, 1.0), ws)
    cut = model.truncate(ws, 0.5, cutoff=3)
    assert torch.equal(cut[:, 3:], ws[:, 3:]) and torch.allclose(cut[:, :3], model.w_avg.lerp(ws[:, :3], 0.5))
    spaces = model.latent_spaces()
    assert spaces["w+"] == (8, 16) and spaces["z"] == (16,)
    s = model.styles(ws)
    assert s.shape == (2, spaces["s"][0])
    noise = model.noise_maps(2)
    with torch.no_grad():
        assert torch.allclose(model.from_styles(s, noise), model.synthesize(ws, noise), atol=1e-6)


def test_cgan_projection_and_infogan_bound():
    cgan = build_model({**TINY, "name": "cgan", "condition": "expression", "num_classes": 3})
    x = torch.randn(4, 3, 32, 32)
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    with torch.no_grad():
        assert not torch.allclose(cgan.discriminator(x, y0), cgan.discriminator(x, y1))
        assert cgan.sample(4, cond=2)["label"].tolist() == [2, 2, 2, 2]
    with pytest.raises(ConfigError, match="condition"):
        build_model({**TINY, "name": "cgan"})
    info = build_model({**TINY, "name": "infogan", "info_categorical": [4], "info_continuous": 2})
    assert info.latent_spaces()["z"] == (16 + 4 + 2,)
    # info_nll: cross-entropy plus the Gaussian NLL, checked by hand
    logits, c = [torch.tensor([[2.0, 0.0, 0.0, 0.0]])], [torch.tensor([0])]
    mean, log_std, cont = torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([[1.0, -1.0]])
    expected = -torch.log_softmax(logits[0], 1)[0, 0] + 2 * (0.5 + 0.5 * math.log(2 * math.pi))
    assert torch.allclose(info_nll(logits, mean, log_std, c, cont), expected)
    assert math.isclose(code_entropy([4], 2), math.log(4) + 2 * math.log(2))
    terms = info.d_loss({"image": torch.randn(8, 3, 32, 32)})
    assert "mutual_information" in terms and float(terms["mutual_information"]) <= code_entropy([4], 2)


def test_ada_heuristic_and_differentiable_augment():
    assert ada.adjust_p(0.2, 0.9, 0.6, images=1000, speed_kimg=10) == pytest.approx(0.3)  # overfits: raise p
    assert ada.adjust_p(0.2, 0.1, 0.6, images=1000, speed_kimg=10) == pytest.approx(0.1)
    assert ada.adjust_p(0.0, 0.0, 0.6, images=1000, speed_kimg=1) == 0.0
    x = (torch.rand(6, 3, 16, 16) * 2 - 1).requires_grad_(True)
    assert ada.augment(x, 0.0) is x
    torch.manual_seed(0)
    y = ada.augment(x, 1.0)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    model = gan(augment="ada", augment_p=0.0, ada_interval=2, ada_target=0.0, ada_kimg=0.01)
    batch = {"image": world_pool()["image"][:8]}
    for step in range(2):
        model.d_loss(batch, step)
    assert float(model.augment_p) != 0.0 or float(model.ada_signs[1]) == 0


def test_bad_configs_give_one_line():
    with pytest.raises(ConfigError, match="widths"):
        build_model({**TINY, "widths": [16, 8]})
    with pytest.raises(ConfigError, match="power-of-two"):
        build_model({**TINY, "image_size": 48})
    with pytest.raises(ConfigError, match="augment"):
        build_model({**TINY, "augment": "bogus"})
    with pytest.raises(ConfigError, match="info"):
        build_model({**TINY, "name": "infogan"})


def run(steps, out, resume=False):
    cfg = run_config({"model": {**TINY, "r1_every": 4, "pl_every": 2, "r1_gamma": 1.0},
                      "data": {"size": 32, "n": 64, "batch_size": 4, "fixed": {"pitch": 0, "roll": 0}},
                      "train": {"max_steps": steps, "save_every": 3, "ema_kimg": 0.1, "ema_rampup": 0.05,
                                "optim": {"G": {"lr": 2e-3, "betas": [0.0, 0.99]},
                                          "D": {"lr": 2e-3, "betas": [0.0, 0.99]}}}})
    return fit(cfg, out, resume=resume, progress=False)


def test_engine_runs_the_four_phases_and_resumes_bit_identically(tmp_path):
    """Stopped after 7 steps and resumed to 9: the resumed part runs D and G (step 7) and all four
    phases (step 8: R1 every 4, PL every 2); weights, EMA and buffers equal the uninterrupted run's."""
    import csv

    full = run(9, tmp_path / "full")
    run(7, tmp_path / "cut")
    run(9, tmp_path / "cut", resume=True)
    a, b = load_file(str(full / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader((full / "metrics.csv").open()))
    assert {r["step"] for r in rows if r.get("loss_r1")} and any(r.get("loss_pl") for r in rows)
    model = mien.load(full)
    assert float(model.w_avg.abs().sum()) > 0 and float(model.pl_mean) > 0
    assert model.sample(2)["image"].abs().max() <= 1


def test_tiny_gan_on_the_world_lowers_its_fid():
    """100 steps of D, lazy R1 and G (Adam with StyleGAN2's betas, an EMA of G as the engine keeps)
    bring a tiny generator's fid_mien to the world well below its initial value."""
    import copy

    pool = world_pool()
    reference = pool["image"][:256]
    model = gan(widths=[32, 32, 16, 16], r1_gamma=0.05, pl_weight=0.0, style_mixing=0.0)
    ema = copy.deepcopy(model)
    groups = model.param_groups()
    optimisers = {g: torch.optim.Adam(p, lr=2e-3, betas=(0.0, 0.99)) for g, p in groups.items()}
    draw = torch.Generator().manual_seed(1)

    def fid(m):
        with torch.no_grad():
            return fid_mien(m.sample(256, generator=torch.Generator().manual_seed(1))["image"], reference)

    before = fid(model)
    for step in range(100):
        batch = {"image": pool["image"][torch.randint(len(pool["image"]), (16,), generator=draw)]}
        for phase in model.phases():
            if step % phase.every == 0:
                loss = phase.loss(batch, step)["loss"] * (phase.every if phase.lazy else 1)
                assert torch.isfinite(loss)
                optimisers[phase.group].zero_grad(set_to_none=True)
                loss.backward(inputs=groups[phase.group])
                optimisers[phase.group].step()
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 0.1)
            for b_ema, b in zip(ema.buffers(), model.buffers()):
                b_ema.copy_(b)
    after = fid(ema)
    assert after < 0.8 * before, (before, after)


def test_sampling_is_deterministic_given_the_generator_and_psi_zero_collapses_to_w_avg():
    model = gan().eval()
    with torch.no_grad():
        model.w_avg.copy_(model.map(torch.randn(64, 16)).mean(0))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a = model.sample(4, generator=g())["image"]
    assert torch.equal(a, model.sample(4, generator=g())["image"])
    noise = model.noise_maps(1)
    collapsed = model.sample(4, generator=g(), psi=0.0, noise=[n.expand(4, -1, -1, -1) for n in noise])["image"]
    assert torch.allclose(collapsed, collapsed[:1].expand_as(collapsed), atol=1e-6)
    assert F.mse_loss(a[0], a[1]) > 1e-4
