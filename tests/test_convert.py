"""``mien convert rosinality``: a state dict with rosinality/stylegan2-pytorch's key names and shapes
(built here from its documented layout, at a small size) converts so that every mien parameter is
filled exactly once, the converted networks compute what rosinality's formulas compute (written out
here independently of mien), and a pickle that would run code is refused with one line and exit 2."""

import argparse
import math
import os

import pytest
import torch
from model_helpers import mien_main  # noqa: F401 (fixture)
import torch.nn.functional as F

import mien
from mien.errors import DataError
from mien.models.stylegan import convert

SIZE, STYLE, N_MLP, LR_MLP = 16, 8, 2, 0.01
CHANNELS = {4: 16, 8: 12, 16: 8}  # a small channel table (rosinality's is 512 up to 32 px)
KERNEL = torch.tensor([1.0, 3.0, 3.0, 1.0])
KERNEL = KERNEL[:, None] * KERNEL[None] / 64


# --- rosinality's state dict layout (Generator, Discriminator of model.py) ----------------------
def rosinality_state(seed=0):
    gen = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=gen) * scale + shift

    g = {}
    for i in range(1, N_MLP + 1):  # style.0 is PixelNorm; EqualLinear weights are N(0, 1) / lr_mul
        g[f"style.{i}.weight"], g[f"style.{i}.bias"] = r(STYLE, STYLE, scale=1 / LR_MLP), r(STYLE, scale=0.1)
    g["input.input"] = r(1, CHANNELS[4], 4, 4)

    def styled(prefix, cin, cout, up):
        g[f"{prefix}.conv.weight"] = r(1, cout, cin, 3, 3)
        g[f"{prefix}.conv.modulation.weight"] = r(cin, STYLE)
        g[f"{prefix}.conv.modulation.bias"] = r(cin, scale=0.1, shift=1.0)
        g[f"{prefix}.noise.weight"] = r(1, scale=0.3)
        g[f"{prefix}.activate.bias"] = r(cout, scale=0.1)
        if up:
            g[f"{prefix}.conv.blur.kernel"] = KERNEL * 4

    def rgb(prefix, cin, up):
        g[f"{prefix}.conv.weight"] = r(1, 3, cin, 1, 1)
        g[f"{prefix}.conv.modulation.weight"] = r(cin, STYLE)
        g[f"{prefix}.conv.modulation.bias"] = r(cin, scale=0.1, shift=1.0)
        g[f"{prefix}.bias"] = r(1, 3, 1, 1, scale=0.1)
        if up:
            g[f"{prefix}.upsample.kernel"] = KERNEL * 4

    styled("conv1", CHANNELS[4], CHANNELS[4], False)
    rgb("to_rgb1", CHANNELS[4], False)
    log_size, c_in = int(math.log2(SIZE)), CHANNELS[4]
    for j, res in enumerate(2 ** i for i in range(3, log_size + 1)):
        styled(f"convs.{2 * j}", c_in, CHANNELS[res], True)
        styled(f"convs.{2 * j + 1}", CHANNELS[res], CHANNELS[res], False)
        rgb(f"to_rgbs.{j}", CHANNELS[res], True)
        c_in = CHANNELS[res]
    for layer in range((log_size - 2) * 2 + 1):
        res = 2 ** ((layer + 5) // 2)
        g[f"noises.noise_{layer}"] = r(1, 1, res, res)

    d = {"convs.0.0.weight": r(CHANNELS[SIZE], 3, 1, 1), "convs.0.1.bias": r(CHANNELS[SIZE], scale=0.1)}
    c_in = CHANNELS[SIZE]
    for i, res in enumerate(2 ** k for k in range(log_size - 1, 1, -1)):
        p = f"convs.{i + 1}"
        d[f"{p}.conv1.0.weight"], d[f"{p}.conv1.1.bias"] = r(c_in, c_in, 3, 3), r(c_in, scale=0.1)
        d[f"{p}.conv2.0.kernel"] = KERNEL
        d[f"{p}.conv2.1.weight"], d[f"{p}.conv2.2.bias"] = r(CHANNELS[res], c_in, 3, 3), r(CHANNELS[res], scale=0.1)
        d[f"{p}.skip.0.kernel"] = KERNEL
        d[f"{p}.skip.1.weight"] = r(CHANNELS[res], c_in, 1, 1)
        c_in = CHANNELS[res]
    d["final_conv.0.weight"], d["final_conv.1.bias"] = r(CHANNELS[4], c_in + 1, 3, 3), r(CHANNELS[4], scale=0.1)
    d["final_linear.0.weight"] = r(CHANNELS[4], CHANNELS[4] * 16)
    d["final_linear.0.bias"] = r(CHANNELS[4], scale=0.1)
    d["final_linear.1.weight"], d["final_linear.1.bias"] = r(1, CHANNELS[4]), r(1, scale=0.1)
    return {"g_ema": g, "d": d, "latent_avg": r(STYLE), "args": argparse.Namespace(size=SIZE)}


# --- rosinality's forward formulas (model.py with op/'s native CPU paths), written out -------------
def upfirdn(x, kernel, up=1, down=1, pad=(0, 0)):
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    x = F.conv2d(x, kernel.flip(0, 1)[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down]


def fused_lrelu(x, bias):
    return F.leaky_relu(x + bias.reshape(1, -1, *[1] * (x.dim() - 2)), 0.2) * math.sqrt(2)


def equal_linear(x, weight, bias, lr_mul=1.0, activate=False):
    out = F.linear(x, weight * lr_mul / math.sqrt(weight.shape[1]))
    return fused_lrelu(out, bias * lr_mul) if activate else out + bias * lr_mul


def modulated_conv(x, g, prefix, w, demodulate=True, up=False):
    weight = g[f"{prefix}.weight"][0]
    weight = weight / math.sqrt(weight[0].numel())
    s = equal_linear(w, g[f"{prefix}.modulation.weight"], g[f"{prefix}.modulation.bias"])
    if demodulate:
        dcoefs = ((weight[None] * s[:, None, :, None, None]) ** 2).sum((2, 3, 4)).add(1e-8).rsqrt()
    x = x * s[:, :, None, None]
    if up:
        out = upfirdn(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2), KERNEL * 4, pad=(1, 1))
    else:
        out = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    return out * dcoefs[:, :, None, None] if demodulate else out


def rosinality_generator(g, z, noise):
    w = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for i in range(1, N_MLP + 1):
        w = equal_linear(w, g[f"style.{i}.weight"], g[f"style.{i}.bias"], LR_MLP, activate=True)

    def styled(x, prefix, noise_map, up=False):
        out = modulated_conv(x, g, f"{prefix}.conv", w, up=up)
        return fused_lrelu(out + g[f"{prefix}.noise.weight"] * noise_map, g[f"{prefix}.activate.bias"])

    def rgb(x, prefix, skip=None):
        out = modulated_conv(x, g, f"{prefix}.conv", w, demodulate=False) + g[f"{prefix}.bias"]
        return out if skip is None else out + upfirdn(skip, KERNEL * 4, up=2, pad=(2, 1))

    x = styled(g["input.input"].repeat(len(z), 1, 1, 1), "conv1", noise[0])
    skip = rgb(x, "to_rgb1")
    for j in range(int(math.log2(SIZE)) - 2):
        x = styled(x, f"convs.{2 * j}", noise[1 + 2 * j], up=True)
        x = styled(x, f"convs.{2 * j + 1}", noise[2 + 2 * j])
        skip = rgb(x, f"to_rgbs.{j}", skip)
    return w, skip


def conv_layer(x, weight, bias=None, down=False, activate=True):
    k = weight.shape[-1]
    weight = weight / math.sqrt(weight[0].numel())
    if down:
        p = 2 + (k - 1)
        x = F.conv2d(upfirdn(x, KERNEL, pad=((p + 1) // 2, p // 2)), weight, stride=2)
    else:
        x = F.conv2d(x, weight, padding=k // 2)
    return fused_lrelu(x, bias) if activate else x


def rosinality_discriminator(d, x):
    out = conv_layer(x, d["convs.0.0.weight"], d["convs.0.1.bias"])
    for i in range(1, int(math.log2(SIZE)) - 1):
        p = f"convs.{i}"
        h = conv_layer(conv_layer(out, d[f"{p}.conv1.0.weight"], d[f"{p}.conv1.1.bias"]),
                       d[f"{p}.conv2.1.weight"], d[f"{p}.conv2.2.bias"], down=True)
        out = (h + conv_layer(out, d[f"{p}.skip.1.weight"], down=True, activate=False)) / math.sqrt(2)
    n, c, h, w = out.shape
    group = min(n, 4)
    std = out.view(group, -1, 1, c, h, w).var(0, unbiased=False).add(1e-8).sqrt().mean([2, 3, 4], keepdim=True)
    out = torch.cat([out, std.squeeze(2).repeat(group, 1, h, w)], 1)
    out = conv_layer(out, d["final_conv.0.weight"], d["final_conv.1.bias"]).reshape(n, -1)
    out = equal_linear(out, d["final_linear.0.weight"], d["final_linear.0.bias"], activate=True)
    return equal_linear(out, d["final_linear.1.weight"], d["final_linear.1.bias"])[:, 0]


# --- the tests ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def converted():
    ckpt = rosinality_state()
    model, config, notes = convert.from_rosinality(ckpt)
    return ckpt, model, config, notes


def test_every_parameter_is_filled_exactly_once(converted):
    ckpt, model, config, notes = converted
    sources = {f"{part}:{k}": v for part in ("g_ema", "d") for k, v in ckpt[part].items()
               if not convert.DROPPED.fullmatch(k)}
    used = []
    for name, p in model.named_parameters():
        flat = p.detach().flatten()
        hits = [k for k, v in sources.items() if v.numel() == p.numel() and torch.equal(v.flatten(), flat)]
        assert len(hits) == 1, (name, hits)
        used += hits
    assert sorted(used) == sorted(sources)  # and every rosinality tensor lands somewhere, once
    torch.testing.assert_close(model.w_avg, ckpt["latent_avg"])
    assert notes == {"source": "rosinality/stylegan2-pytorch", "generator": "g_ema", "discriminator": "d",
                     "w_avg": "latent_avg"}
    assert config["model"]["widths"] == [16, 12, 8] and config["model"]["mapping_layers"] == N_MLP
    assert config["model"]["r1_gamma"] == 1.0  # the paper preset's hyper-parameters, the weights' geometry


@pytest.mark.parametrize("fused", [False, True])
def test_converted_networks_compute_rosinalitys_formulas(converted, fused):
    ckpt, model, _, _ = converted
    model.synthesis.set_fused(fused)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(4, STYLE, generator=g)
    noise = model.noise_maps(4, g)
    w_ref, image_ref = rosinality_generator(ckpt["g_ema"], z, noise)
    with torch.no_grad():
        w = model.map(z)
        image = model.synthesize(model.broadcast(w), noise)
        logits = model.discriminator(image_ref)
    torch.testing.assert_close(w, w_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(image, image_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits, rosinality_discriminator(ckpt["d"], image_ref), rtol=1e-4, atol=1e-4)
    assert image.std() > 0.01  # a non-degenerate comparison
    model.synthesis.set_fused(False)


def test_config_f_geometry_at_256_px_is_the_paper_preset():
    """Shapes only (meta tensors): rosinality's 256-px config-f generator maps onto stylegan/paper."""
    g = {f"style.{i}.weight": torch.empty(512, 512, device="meta") for i in range(1, 9)}
    channels = convert.rosinality_channels(256, 2)
    g["conv1.conv.weight"] = torch.empty(1, 512, 512, 3, 3, device="meta")
    for j, c in enumerate(channels[1:]):
        g[f"convs.{2 * j}.conv.weight"] = torch.empty(1, c, channels[j], 3, 3, device="meta")
        g[f"to_rgbs.{j}.conv.weight"] = torch.empty(1, 3, c, 1, 1, device="meta")
    section = convert.model_section(g, 256, 2)
    paper = mien.config.load_yaml("stylegan/paper")["model"]
    assert section["image_size"] == 256 and section["widths"] == paper["widths"]
    assert (section["z_dim"], section["w_dim"], section["mapping_layers"]) == (512, 512, 8)
    with pytest.raises(DataError, match="not --size 512"):
        convert.model_section(g, 512)
    with pytest.raises(DataError, match="channel-multiplier 1"):
        convert.model_section(g, 256, 1)


def test_without_latent_avg_and_d(converted):
    ckpt = rosinality_state()
    model, _, notes = convert.from_rosinality({"g_ema": ckpt["g_ema"]})
    assert notes["discriminator"].startswith("not in the checkpoint") and notes["w_avg"].startswith("mean of f(z)")
    z = torch.randn(convert.W_AVG_SAMPLES, STYLE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.w_avg, model.map(z).mean(0))


def test_foreign_or_incomplete_state_dicts_are_refused():
    ckpt = rosinality_state()
    with pytest.raises(DataError, match="keys rosinality's config-f networks do not"):
        convert.from_rosinality({"g_ema": {**ckpt["g_ema"], "convs.0.conv.weight_orig": torch.zeros(1)}})
    g = dict(ckpt["g_ema"])
    del g["to_rgb1.bias"]
    with pytest.raises(DataError, match="lacks to_rgb1.bias"):
        convert.from_rosinality({"g_ema": g})
    g = dict(ckpt["g_ema"])
    g["conv1.activate.bias"] = torch.zeros(5)
    with pytest.raises(DataError, match="conv1.activate.bias has shape"):
        convert.from_rosinality({"g_ema": g})


class Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cli_converts_a_training_checkpoint_with_args(mien_main, tmp_path):
    ckpt = rosinality_state()
    torch.save({**ckpt, "g": ckpt["g_ema"]}, tmp_path / "000100.pt")
    code, out = mien_main("convert", "rosinality", tmp_path / "000100.pt", "--out", tmp_path / "run", "--size", SIZE)
    assert code == 0, out.err
    assert "16 px" in out.out
    model = mien.load(tmp_path / "run")
    assert model.sample(2, generator=torch.Generator().manual_seed(0))["image"].shape == (2, 3, SIZE, SIZE)
    torch.testing.assert_close(model.w_avg, ckpt["latent_avg"])


def test_cli_refuses_a_pickle_that_runs_code(mien_main, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"g_ema": {}, "payload": Hostile(marker)}, tmp_path / "evil.pt")
    code, out = mien_main("convert", "rosinality", tmp_path / "evil.pt", "--out", tmp_path / "run")
    assert code == 2 and "weights only" in out.err and len(out.err.strip().splitlines()) == 1, out.err
    assert not marker.exists() and not (tmp_path / "run").exists()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, out = mien_main("convert", "rosinality", tmp_path / "junk.pt", "--out", tmp_path / "run")
    assert code == 2 and len(out.err.strip().splitlines()) == 1
    code, out = mien_main("convert", "rosinality", tmp_path / "none.pt", "--out", tmp_path / "run")
    assert code == 2 and "does not exist" in out.err
