"""GAN inversion (Haas §1.3): optimisation in W / W+ (Eq. 2.20 with the StyleGAN2 projector's
schedule and noise regulariser), the pSp / e4e encoders trained by the engine, and `mien invert`."""

import json
import math

import numpy as np
import pytest
import torch
from model_helpers import run_main  # noqa: F401 (fixtures)
from PIL import Image

import mien
from mien.config import preset_path
from mien.control import gan_invert
from mien.control.invert import invert
from mien.errors import ConfigError, DataError
from mien.models import build_model, checkpoint
from mien.models.stylegan.encoder import delta_regularisation, load_encoder, w_norm
from mien.train import fit, load_run_config

GAN = {"name": "stylegan", "image_size": 32, "widths": [32, 32, 16, 8], "z_dim": 32, "w_dim": 32, "mapping_layers": 2}


def make_gan(seed: int):
    torch.manual_seed(seed)
    return build_model(GAN).eval()


@pytest.fixture(scope="module")
def gan():
    """An untrained StyleGAN of fixed seed (its images still vary with w: random affine maps)."""
    return make_gan(0)


@pytest.fixture(scope="module")
def gan_dir(gan, tmp_path_factory):
    model = gan
    return checkpoint.save(model, tmp_path_factory.mktemp("gan"), {"model": model.config_dict()}, {"model": "stylegan"})


@pytest.fixture(scope="module")
def encoder_run(gan_dir, tmp_path_factory):
    """A pSp encoder of ``gan_dir`` trained through the engine for 24 steps (psp/tiny preset)."""
    cfg = load_run_config(preset_path("psp", "tiny"), [f"model.generator={gan_dir}", "train.max_steps=24",
                                                      "data.n=192", "train.log_every=1"])
    return fit(cfg, tmp_path_factory.mktemp("enc") / "run", progress=False)


def generated(model, n: int, seed: int, mixed: bool = False):
    """n faces G(w) (W+ codes from n x num_ws independent w when ``mixed``) under fixed noise."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if mixed:
            ws = torch.stack([model.map(model.draw_z(n, gen)[0]) for _ in range(model.config.num_ws)], 1)
        else:
            ws = model.broadcast(model.map(model.draw_z(n, gen)[0]))
        return model.synthesize(ws, model.noise_maps(n, gen)).clamp(-1, 1)


# --- the pieces of the projector -------------------------------------------------------------------

def test_noise_regularisation_on_analytic_maps():
    ones = torch.ones(1, 1, 64, 64)  # scales 64, 32, 16, 8: each contributes 1^2 + 1^2
    assert gan_invert.noise_regularisation([ones]).item() == pytest.approx(8.0)
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = ((-1.0) ** (i + j))[None, None]  # lag-1 products are -1 at 16 px; its 8-px average is 0
    assert gan_invert.noise_regularisation([checker]).item() == pytest.approx(2.0)
    white = torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    reg = gan_invert.noise_regularisation([white])
    expected = sum(2 / s ** 2 for s in (64, 32, 16, 8))  # E[(mean of s^2 products)^2] = 1 / s^2 per direction
    assert reg.shape == (3,) and reg.mean().item() < 3 * expected < 0.2
    both = gan_invert.noise_regularisation([white, ones.expand(3, -1, -1, -1)])  # summed over the maps
    assert torch.allclose(both, reg + 8.0)


def test_learning_rate_ramp_follows_the_projector():
    lr = 0.1
    assert gan_invert.learning_rate(0.0, lr) == 0.0
    assert gan_invert.learning_rate(0.025, lr) == pytest.approx(lr / 2)  # linear ramp-up over 5 %
    assert gan_invert.learning_rate(0.5, lr) == pytest.approx(lr)
    assert gan_invert.learning_rate(0.875, lr) == pytest.approx(lr * 0.5)  # cosine half way down the last 25 %
    t = 0.8
    assert gan_invert.learning_rate(t, lr) == pytest.approx(lr * (0.5 - 0.5 * math.cos(math.pi * 0.2 / 0.25)))
    assert gan_invert.learning_rate(1.0, lr) == pytest.approx(0.0)


# --- optimisation inversion -----------------------------------------------------------------------

def test_optimisation_in_w_plus_recovers_a_generated_face(gan):
    target = generated(gan, 2, seed=1)
    result = gan_invert.optimise(gan, target, "w+", steps=100, generator=torch.Generator().manual_seed(0))
    start = result.history["lpips"][0]
    assert result.codes.shape == (2, gan.config.num_ws, gan.config.w_dim) and result.ws.shape == result.codes.shape
    assert len(result.history["loss"]) == 100 and result.images.shape == target.shape
    assert result.lpips.mean() < 0.15 and result.lpips.mean() < start / 4, (start, result.lpips)
    assert result.mse.mean() < 0.1
    for m in result.noise:  # renormalised after every step
        assert m.mean((1, 2, 3)).abs().max() < 1e-4 and (m.pow(2).mean((1, 2, 3)) - 1).abs().max() < 1e-3
    twice = [gan_invert.optimise(gan, target, "w+", steps=3, generator=torch.Generator().manual_seed(0)).codes
             for _ in range(2)]
    assert torch.equal(*twice)  # seeded: reproducible


def test_w_plus_fits_a_mixed_target_better_than_w(gan):
    target = generated(gan, 2, seed=2, mixed=True)
    runs = {space: gan_invert.optimise(gan, target, space, steps=100, generator=torch.Generator().manual_seed(0))
            for space in ("w", "w+")}
    assert runs["w"].codes.shape == (2, gan.config.w_dim)
    assert torch.equal(runs["w"].ws, gan.broadcast(runs["w"].codes))
    assert runs["w+"].history["loss"][-1] < runs["w"].history["loss"][-1]
    assert runs["w+"].lpips.mean() < 0.7 * runs["w"].lpips.mean(), (runs["w+"].lpips, runs["w"].lpips)


def test_inversion_dispatch_and_bad_input(gan):
    x = generated(gan, 2, seed=3)
    codes = invert(gan, x, "w", steps=3)
    assert codes.shape == (2, gan.config.w_dim)
    start = gan.broadcast(gan.w_avg[None].expand(2, -1)) + 0.5
    few = gan_invert.optimise(gan, x, "w+", steps=1, lr=1e-9, w_noise=0.0, start=start)
    assert torch.allclose(few.codes, start, atol=1e-6)  # lr ramp starts at 0: the start is kept
    assert all(p.requires_grad for p in gan.parameters())  # the caller's model is left trainable
    with pytest.raises(DataError, match="3 x 32 x 32"):
        gan_invert.optimise(gan, torch.zeros(1, 3, 16, 16), steps=2)
    with pytest.raises(DataError, match="NaN"):
        gan_invert.optimise(gan, torch.full((1, 3, 32, 32), float("nan")), steps=2)
    with pytest.raises(ConfigError, match="starting codes"):
        gan_invert.optimise(gan, x, "w", steps=2, start=torch.zeros(2, 5))
    with pytest.raises(ConfigError, match="positive integer"):
        gan_invert.optimise(gan, x, steps=0)
    with pytest.raises(ConfigError, match="not a GAN"):
        gan_invert.optimise(build_model({"name": "klae", "image_size": 32, "widths": [8, 16]}), x, steps=2)
    with pytest.raises(ConfigError, match="unknown GAN inversion method"):
        invert(gan, x, "w+", method="magic")


# --- encoders -------------------------------------------------------------------------------------

def test_e4e_codes_are_w_plus_offsets_and_d_reg_is_the_formula(gan_dir):
    torch.manual_seed(0)
    enc = build_model({"name": "psp", "generator": str(gan_dir), "image_size": 32, "widths": [8, 16, 16],
                       "variant": "e4e", "synthetic": 0.0, "lpips_weight": 0.0, "d_reg_weight": 0.5,
                       "latent_disc_weight": 0.0})
    x = generated(enc.generator, 3, seed=4)
    codes, deltas = enc.offsets(x)
    num_ws = enc.num_ws
    assert codes.shape == (3, num_ws, 32) and deltas.shape == (3, num_ws - 1, 32)
    assert torch.allclose(codes[:, 1:] - codes[:, :1], deltas, atol=1e-6)
    by_hand = torch.tensor([sum(math.sqrt(sum(float(v) ** 2 for v in deltas[b, i])) for i in range(num_ws - 1))
                            for b in range(3)])
    assert torch.allclose(delta_regularisation(deltas), by_hand, rtol=1e-5)
    out = enc.loss({"image": x})
    assert out["d_reg"].item() == pytest.approx(by_hand.mean().item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["mse"].item() + 0.5 * by_hand.mean().item(), rel=1e-5)
    assert torch.allclose(enc.encode(x), codes + enc.generator.w_avg)
    # progressive training: offset i switches on at step i * progressive_every
    enc.config.progressive_every = 2
    enc.loss({"image": x}, step=4)
    _, deltas = enc.offsets(x)
    assert int(enc.offsets_active) == 2
    assert deltas[:, :2].abs().sum() > 0 and deltas[:, 2:].abs().sum() == 0


def test_e4e_latent_discriminator_learns_to_tell_f_z_from_codes(gan_dir):
    import torch.nn.functional as F

    torch.manual_seed(0)
    enc = build_model({"name": "psp", "generator": str(gan_dir), "image_size": 32, "widths": [8, 16, 16],
                       "variant": "e4e", "synthetic": 0.0, "lpips_weight": 0.0, "latent_r1_every": 2})
    assert [p.name for p in enc.phases()] == ["model", "disc", "latent_r1"]
    assert set(enc.param_groups()) == {"model", "disc"}
    x = generated(enc.generator, 8, seed=7)
    out = enc.loss({"image": x})
    with torch.no_grad():
        adv = F.softplus(-enc.latent_disc(enc.encode(x))).mean()
    assert out["latent_adv"].item() == pytest.approx(adv.item(), rel=1e-5)
    opt = torch.optim.Adam(enc.param_groups()["disc"], lr=3e-3)
    first = None
    for step in range(100):
        loss = enc.latent_disc_loss({"image": x}, step)["loss"]
        if step % 2 == 0:
            loss = loss + 2 * enc.latent_r1_loss({"image": x}, step)["loss"]
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = enc.latent_disc_loss({"image": x})["loss"].item()
    assert first == pytest.approx(2 * math.log(2), abs=0.3) and final < first - 0.3, (first, final)


def test_psp_maps_coarse_medium_fine_levels_to_first_middle_last_codes(gan_dir):
    torch.manual_seed(0)
    enc = build_model({"name": "psp", "generator": str(gan_dir), "image_size": 32, "widths": [8, 16, 16]})
    assert (enc.coarse, enc.medium, enc.num_ws) == (1, 3, 8)  # pSp's 3 / 7 of 18, scaled to 8 style inputs
    x = generated(enc.generator, 2, seed=5)
    with torch.no_grad():
        before = enc.encode(x)
        enc.pyramid.lateral_fine.weight.add_(1.0)  # changes only the fine level
        after_fine = enc.encode(x)
        enc.pyramid.lateral_medium.weight.add_(1.0)  # changes the medium level (and the fine one, top-down)
        after_medium = enc.encode(x)
    assert before.shape == (2, 8, 32)
    assert torch.equal(before[:, :3], after_fine[:, :3]) and not torch.allclose(before[:, 3:], after_fine[:, 3:])
    assert torch.equal(after_fine[:, :1], after_medium[:, :1])
    assert not torch.allclose(after_fine[:, 1:3], after_medium[:, 1:3])
    assert w_norm(before - enc.generator.w_avg).shape == (2,)


def test_encoder_trains_through_the_engine(encoder_run, gan_dir, gan):
    rows = [r for r in (encoder_run / "metrics.csv").read_text().splitlines()[1:]]
    header = (encoder_run / "metrics.csv").read_text().splitlines()[0].split(",")
    losses = [float(dict(zip(header, r.split(",")))["loss"]) for r in rows if dict(zip(header, r.split(",")))["loss"]]
    assert len(losses) >= 20 and np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    config = checkpoint.read_config(encoder_run)["model"]
    assert config["generator"] == str(gan_dir) and len(config["generator_fingerprint"]) == 16
    weights = checkpoint.read_weights(encoder_run)
    assert not any(k.startswith(("mapping.", "synthesis.", "discriminator.")) for k in weights)  # G is not saved
    enc = mien.load(encoder_run)
    x = generated(gan, 2, seed=6)
    with torch.no_grad():
        assert enc.encode(x).shape == (2, gan.config.num_ws, gan.config.w_dim)
        assert enc.reconstruct(x).shape == x.shape
    result = gan_invert.encode(enc, x, "w+")
    assert result.codes.shape == (2, gan.config.num_ws, gan.config.w_dim) and result.lpips.shape == (2,)
    with pytest.raises(ConfigError, match="pSp encoder predicts W\\+"):
        gan_invert.encode(enc, x, "w")
    codes = invert(gan, x, "w+", method="optimise", encoder=enc, steps=2)  # the hybrid: encoder codes, refined
    assert codes.shape == (2, gan.config.num_ws, gan.config.w_dim)


def test_an_encoder_of_another_generator_is_rejected(encoder_run, tmp_path):
    other = make_gan(1)
    other_dir = checkpoint.save(other, tmp_path / "other", {"model": other.config_dict()}, {"model": "stylegan"})
    with pytest.raises(DataError, match="trained for another generator"):
        load_encoder(encoder_run, generator=other_dir)
    gan_dir = checkpoint.read_config(encoder_run)["model"]["generator"]
    (tmp_path / "moved").mkdir()
    for f in checkpoint.FILES:  # a moved copy of the right generator is accepted
        (tmp_path / "moved" / f).write_bytes((checkpoint.Path(gan_dir) / f).read_bytes())
    assert load_encoder(encoder_run, generator=tmp_path / "moved").config.generator == str(tmp_path / "moved")


# --- the command line -----------------------------------------------------------------------------

def run_cli(monkeypatch, capsys, *args):
    return run_main(monkeypatch, capsys, *args)


def test_cli_writes_codes_and_grid(gan_dir, encoder_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "inv"
    code, stdout, err = run_cli(monkeypatch, capsys, "invert", gan_dir, "--data", "world", "--n", "3", "--space", "w",
                                "--steps", "4", "--out", out, "--no-progress")
    assert code == 0, err
    tensors, info = gan_invert.load_inversion(out)
    assert tensors["codes"].shape == (3, 32) and tensors["ws"].shape == (3, 8, 32)
    assert len([k for k in tensors if k.startswith("noise_")]) == len(make_gan(0).synthesis.layers)
    assert info["space"] == "w" and info["method"] == "optimise" and info["generator"] == str(gan_dir)
    assert info["steps"] == 4 and len(info["lpips_mien"]) == 3
    grid = Image.open(out / "grid.png")
    assert grid.size == (3 * 66 + 2, 2 * 66 + 2)  # input row over reconstruction row, 2x scale, 2-px borders
    face = tmp_path / "face.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(face)
    code, _, err = run_cli(monkeypatch, capsys, "invert", gan_dir, "--image", face, "--no-align", "--method", "encoder",
                           "--encoder", encoder_run, "--out", tmp_path / "enc")
    assert code == 0, err
    assert json.loads((tmp_path / "enc" / "codes.json").read_text())["encoder"] == str(encoder_run)


def test_cli_bad_inputs_give_one_line_and_exit_2(gan_dir, encoder_run, tmp_path, monkeypatch, capsys):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(small)
    other = make_gan(2)
    other_dir = checkpoint.save(other, tmp_path / "other", {"model": other.config_dict()}, {"model": "stylegan"})
    cases = {"no face found": ["invert", gan_dir, "--image", small],  # photos are detected and aligned (issue 19)
             "not a GAN": ["invert", encoder_run],
             "another generator": ["invert", other_dir, "--method", "encoder", "--encoder", encoder_run],
             "--steps must": ["invert", gan_dir, "--steps", "nan"],
             "--steps must be": ["invert", gan_dir, "--steps", "-3"],
             "--n must": ["invert", gan_dir, "--n", "nan"],
             "--n must be": ["invert", gan_dir, "--n", "-1"],
             "needs --encoder": ["invert", gan_dir, "--method", "encoder"],
             "choose w or w+": ["invert", gan_dir, "--space", "s"]}
    for expected, args in cases.items():
        code, _, err = run_cli(monkeypatch, capsys, *args, "--out", tmp_path / "bad")
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "bad" / "codes.safetensors").exists()
