"""Checkpoints of the field: rosinality/stylegan2-pytorch state dicts -> mien's StyleGAN2 layout.

rosinality's ``Generator`` and ``Discriminator`` (config-f, Karras et al. 2020) are mien's
``stylegan`` architecture one to one (checked formula by formula: equalised layers and their
lr multiplier, [1, 3, 3, 1] FIR with the same paddings around the transposed up-convolution, the
down-convolutions and the toRGB up-sampling, minibatch stddev with group 4, the W+ index of each
style layer). The names and shapes differ:

    rosinality (g_ema / g)                 mien
    style.{i+1}.weight, .bias              mapping.net.{i}.weight, .bias        (style.0 is PixelNorm)
    input.input                            synthesis.const
    conv1.conv.weight  (1, out, in, 3, 3)  synthesis.layers.0.conv.weight  (out, in, 3, 3)
    conv1.conv.modulation.weight, .bias    synthesis.layers.0.conv.affine.weight, .bias
    conv1.noise.weight (1,)                synthesis.layers.0.noise_strength ()
    conv1.activate.bias                    synthesis.layers.0.bias
    to_rgb1.conv.*, to_rgb1.bias (1,3,1,1) synthesis.to_rgb.0.conv.*, synthesis.to_rgb.0.bias (3,)
    convs.{j}.*                            synthesis.layers.{j+1}.*
    to_rgbs.{j}.*                          synthesis.to_rgb.{j+1}.*
    latent_avg (checkpoint, optional)      w_avg

    rosinality (d)                         mien
    convs.0.0.weight, convs.0.1.bias       discriminator.from_rgb.weight, .bias
    convs.{i+1}.conv1.0.weight, .1.bias    discriminator.blocks.{i}.conv1.weight, .bias
    convs.{i+1}.conv2.1.weight, .2.bias    discriminator.blocks.{i}.conv2.weight, .bias
    convs.{i+1}.skip.1.weight              discriminator.blocks.{i}.skip.weight
    final_conv.0.weight, final_conv.1.bias discriminator.final_conv.weight, .bias
    final_linear.0.*, final_linear.1.*     discriminator.final_linear.*, discriminator.out.*

Dropped: the FIR kernels (``*.blur.kernel``, ``*.upsample.kernel``, ``*.0.kernel``: constants
mien rebuilds) and ``noises.noise_N`` (rosinality's stored noise for ``randomize_noise=False``;
mien draws noise or takes it as an argument). Without ``latent_avg`` w_avg is the mean of f(z) over
10,000 z (seed 0), as rosinality's ``mean_latent``; without ``d`` the discriminator keeps its
initialisation (both reported). The file is read with ``torch.load(weights_only=True)``: tensors,
containers and argparse's Namespace (the ``args`` of rosinality's training checkpoints) only.
"""

from __future__ import annotations

import argparse
import re

import torch

from mien.config import load_yaml, preset_path
from mien.errors import DataError
from mien.models.base import build_model

W_AVG_SAMPLES = 10000


def rosinality_channels(size: int, channel_multiplier: int = 2) -> list[int]:
    """rosinality's channel table at resolutions 4, 8, ..., size."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return [table[r] * (channel_multiplier if r >= 64 else 1) for r in (2 ** i for i in range(2, size.bit_length()))]


def read_checkpoint(path) -> dict:
    """The dict of a rosinality ``.pt`` file, loaded without unpickling code."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; pass a rosinality/stylegan2-pytorch .pt checkpoint") from None
    except Exception as e:  # pickle errors, refused globals, truncated zips
        raise DataError(f"{path} cannot be loaded as weights only ({str(e).splitlines()[0][:120]}); it holds more "
                        "than tensors (possibly code) or is corrupt: pass a state-dict checkpoint") from None
    if not isinstance(ckpt, dict) or not any(isinstance(ckpt.get(k), dict) for k in ("g_ema", "g")):
        raise DataError(f"{path} has no 'g_ema' or 'g' state dict; pass a rosinality/stylegan2-pytorch checkpoint")
    return ckpt


def _count(state: dict, pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.fullmatch(pattern, k))})


def model_section(g: dict, size: int | None = None, channel_multiplier: int | None = None) -> dict:
    """mien's ``stylegan`` model section for a rosinality generator state dict (geometry read from
    the tensors; ``size`` and ``channel_multiplier``, when given, must agree)."""
    try:
        blocks = _count(g, r"to_rgbs\.(\d+)\.conv\.weight")
        n_mlp = _count(g, r"style\.(\d+)\.weight")
        style_dim = g["style.1.weight"].shape[0]
        widths = [g["conv1.conv.weight"].shape[1]] + [g[f"convs.{2 * j}.conv.weight"].shape[1] for j in range(blocks)]
    except (KeyError, IndexError, AttributeError) as e:
        raise DataError(f"the generator state dict lacks {e} of rosinality's Generator; pass a "
                        "rosinality/stylegan2-pytorch checkpoint") from None
    found = 4 * 2 ** blocks
    if size is not None and size != found:
        raise DataError(f"the checkpoint's generator makes {found} px images, not --size {size}; drop --size or fix it")
    if channel_multiplier is not None and widths != rosinality_channels(found, channel_multiplier):
        raise DataError(f"the checkpoint's channels {widths} are not rosinality's at --channel-multiplier "
                        f"{channel_multiplier} ({rosinality_channels(found, channel_multiplier)}); fix the flag")
    return {"name": "stylegan", "image_size": found, "widths": widths, "z_dim": style_dim, "w_dim": style_dim,
            "mapping_layers": n_mlp}


def _generator_names(blocks: int, n_mlp: int) -> dict[str, str]:
    names = {}
    for i in range(n_mlp):
        names.update({f"mapping.net.{i}.{p}": f"style.{i + 1}.{p}" for p in ("weight", "bias")})
    names["synthesis.const"] = "input.input"
    styled = {"conv.weight": "conv.weight", "conv.affine.weight": "conv.modulation.weight",
              "conv.affine.bias": "conv.modulation.bias", "noise_strength": "noise.weight", "bias": "activate.bias"}
    rgb = {"conv.weight": "conv.weight", "conv.affine.weight": "conv.modulation.weight",
           "conv.affine.bias": "conv.modulation.bias", "bias": "bias"}
    sources = [("synthesis.layers.0", "conv1", styled), ("synthesis.to_rgb.0", "to_rgb1", rgb)]
    for j in range(2 * blocks):
        sources.append((f"synthesis.layers.{j + 1}", f"convs.{j}", styled))
    for j in range(blocks):
        sources.append((f"synthesis.to_rgb.{j + 1}", f"to_rgbs.{j}", rgb))
    for ours, theirs, table in sources:
        names.update({f"{ours}.{a}": f"{theirs}.{b}" for a, b in table.items()})
    return names


def _discriminator_names(blocks: int) -> dict[str, str]:
    names = {"from_rgb.weight": "convs.0.0.weight", "from_rgb.bias": "convs.0.1.bias",
             "final_conv.weight": "final_conv.0.weight", "final_conv.bias": "final_conv.1.bias",
             "final_linear.weight": "final_linear.0.weight", "final_linear.bias": "final_linear.0.bias",
             "out.weight": "final_linear.1.weight", "out.bias": "final_linear.1.bias"}
    for i in range(blocks):
        names.update({f"blocks.{i}.conv1.weight": f"convs.{i + 1}.conv1.0.weight",
                      f"blocks.{i}.conv1.bias": f"convs.{i + 1}.conv1.1.bias",
                      f"blocks.{i}.conv2.weight": f"convs.{i + 1}.conv2.1.weight",
                      f"blocks.{i}.conv2.bias": f"convs.{i + 1}.conv2.2.bias",
                      f"blocks.{i}.skip.weight": f"convs.{i + 1}.skip.1.weight"})
    return {f"discriminator.{k}": v for k, v in names.items()}


DROPPED = re.compile(r"(noises\.noise_\d+|.*\.kernel)")


def _take(state: dict, names: dict[str, str], targets: dict, what: str) -> dict:
    """mien key -> tensor for every name, reshaped from rosinality's (1, ...) / (1, C, 1, 1) forms;
    every non-constant source key must be used."""
    unused = sorted(k for k in state if k not in set(names.values()) and not DROPPED.fullmatch(k))
    if unused:
        raise DataError(f"the {what} state dict has keys rosinality's config-f networks do not "
                        f"({', '.join(unused[:3])}{', ...' if len(unused) > 3 else ''}); a different architecture "
                        "cannot be converted")
    out = {}
    for ours, theirs in names.items():
        if theirs not in state:
            raise DataError(f"the {what} state dict lacks {theirs}; pass a complete rosinality checkpoint")
        src, shape = state[theirs], targets[ours].shape
        if src.numel() != targets[ours].numel() or tuple(s for s in src.shape if s != 1) != \
                tuple(s for s in shape if s != 1):
            raise DataError(f"{what} tensor {theirs} has shape {tuple(src.shape)}, mien's {ours} needs "
                            f"{tuple(shape)}; the checkpoint does not match its own geometry")
        out[ours] = src.detach().to(targets[ours].dtype).reshape(shape).clone()
    return out


def from_rosinality(ckpt: dict, size: int | None = None, channel_multiplier: int | None = None):
    """(mien StyleGAN, config dict, notes) from a rosinality checkpoint dict (``g_ema`` preferred
    over ``g``; ``d`` and ``latent_avg`` when present)."""
    which = "g_ema" if isinstance(ckpt.get("g_ema"), dict) else "g"
    g, d = ckpt[which], ckpt.get("d")
    section = model_section(g, size, channel_multiplier)
    preset = load_yaml(preset_path("stylegan", "paper1024" if section["image_size"] == 1024 else "paper"))
    section = {**preset["model"], **section}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(section)
    targets = dict(model.named_parameters())
    blocks = len(section["widths"]) - 1
    values = _take(g, _generator_names(blocks, section["mapping_layers"]), targets, which)
    notes = {"source": "rosinality/stylegan2-pytorch", "generator": which}
    if isinstance(d, dict):
        values.update(_take(d, _discriminator_names(blocks), targets, "d"))
        notes["discriminator"] = "d"
    else:
        notes["discriminator"] = "not in the checkpoint: initialised (seed 0), train it before fine-tuning"
    expected = {k for k in targets if notes["discriminator"] == "d" or not k.startswith("discriminator.")}
    if expected - set(values):
        raise DataError(f"no rosinality tensor for {', '.join(sorted(expected - set(values))[:3])}; "
                        "this model has parameters config-f lacks (a cgan or infogan cannot be converted)")
    model.load_state_dict(values, strict=False)
    with torch.no_grad():
        avg = ckpt.get("latent_avg")
        if torch.is_tensor(avg) and avg.numel() == section["w_dim"]:
            model.w_avg.copy_(avg.reshape(-1))
            notes["w_avg"] = "latent_avg"
        else:
            z = torch.randn(W_AVG_SAMPLES, section["z_dim"], generator=torch.Generator().manual_seed(0))
            model.w_avg.copy_(model.map(z).mean(0))
            notes["w_avg"] = f"mean of f(z) over {W_AVG_SAMPLES} z (seed 0)"
    config = {"model": model.config_dict(), "data": {**preset.get("data", {}), "size": section["image_size"]},
              "train": preset.get("train", {})}
    return model.eval(), config, notes
