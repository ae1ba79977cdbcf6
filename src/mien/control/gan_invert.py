"""GAN inversion by optimisation (Haas thesis Ch. 2.4, digest §1.3, Eq. 2.20):

    w* = argmin_w  lpips_mien(G(w), I) + lambda ||G(w) - I||^2,

in W (one w broadcast to every style input) or W+ (one w per style input; Abdal et al. 2019),
with the StyleGAN2 projector's schedule (Karras et al. 2020, App. D; ``projector.py`` of
stylegan2-ada-pytorch): start from w_avg (or given codes, e.g. an encoder's: the hybrid of Haas
P-I, Fig. 3.4a), Adam on the codes and the per-layer noise maps, a learning rate ramped up linearly
over the first ``lr_rampup`` of the steps and down by a cosine over the last ``lr_rampdown``, Gaussian
noise on w of scale sigma_w * w_noise * max(0, 1 - t / noise_ramp)^2 (sigma_w the spread of sampled
w), and the noise regulariser (:func:`noise_regularisation`) with the noise maps renormalised
to zero mean and unit variance after each step. Distances are per image; the images of a batch are
inverted independently (their losses are summed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from mien.errors import ConfigError, DataError
from mien.evaluator.perceptual import lpips_distance
from mien.io import atomic_write_bytes, atomic_write_text, ensure_writable_dir, read_tensor_files

FORMAT = "mien.inversion/1"


@dataclass
class Inversion:
    """The result of :func:`optimise`: ``codes`` (n x w_dim in W, n x num_ws x w_dim in W+),
    ``ws`` (the W+ form of the codes), ``noise`` (one n x 1 x h x w map per styled layer),
    ``images`` (the reconstructions G(codes, noise), clamped to [-1, 1]), ``lpips`` and ``mse``
    per image at the end, and ``history`` (per step: ``loss``, ``lpips``, ``mse``, ``noise_reg``,
    ``lr``, batch means)."""

    space: str
    codes: torch.Tensor
    ws: torch.Tensor
    noise: list[torch.Tensor]
    images: torch.Tensor
    lpips: torch.Tensor
    mse: torch.Tensor
    history: dict[str, list[float]] = field(default_factory=dict)


def noise_regularisation(noise: list[torch.Tensor], min_size: int = 8) -> torch.Tensor:
    """The StyleGAN2 projector's noise regulariser, per image (n): for every noise map and each of
    its 2x average-pooled versions down to ``min_size`` px, the squared mean of the map times itself
    shifted by one pixel horizontally, and the same vertically (the squared autocorrelation at lag
    1, summed over scales). Near 0 for white noise (about 2 / (h w) per scale), 2 per scale for a
    constant map of ones: it keeps the optimiser from hiding the image in the noise inputs."""
    total = 0.0
    for n in noise:
        while True:
            total = total + (n * n.roll(1, dims=3)).mean((1, 2, 3)) ** 2 + (n * n.roll(1, dims=2)).mean((1, 2, 3)) ** 2
            if n.shape[2] <= min_size:
                break
            n = F.avg_pool2d(n, 2)
    return total


def learning_rate(t: float, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The projector's learning rate at progress t in [0, 1]: lr * 0.5 (1 - cos(pi min(1, (1 - t) /
    rampdown))) * min(1, t / rampup)."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * (min(1.0, t / rampup) if rampup > 0 else 1.0)


def reconstruction_loss(evaluator, images: torch.Tensor, target: torch.Tensor, mse_weight: float,
                        lpips_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 2.20 per image: (lpips_weight * lpips_mien + mse_weight * MSE, lpips_mien, MSE)."""
    lpips = lpips_distance(evaluator, images, target)
    mse = (images - target).pow(2).mean((1, 2, 3))
    return lpips_weight * lpips + mse_weight * mse, lpips, mse


def _check_target(model, images: torch.Tensor) -> torch.Tensor:
    c = model.config
    shape = (c.in_channels, c.image_size, c.image_size)
    if not torch.is_tensor(images) or images.dim() != 4 or tuple(images.shape[1:]) != shape:
        got = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise DataError(f"inversion targets must be n x {' x '.join(map(str, shape))} images of this GAN, got {got}; "
                        "resize them to the generator's size")
    if not torch.isfinite(images).all():
        raise DataError("inversion targets contain NaN or infinite values; pass images in [-1, 1]")
    return images.to(model.w_avg.device, torch.float32)


def _start_codes(model, n: int, space: str, start) -> torch.Tensor:
    c = model.config
    shape = (n, c.w_dim) if space == "w" else (n, c.num_ws, c.w_dim)
    if start is None:
        w = model.w_avg[None].expand(n, -1)
        return (w if space == "w" else model.broadcast(w)).clone()
    start = torch.as_tensor(start, dtype=torch.float32).to(model.w_avg.device)
    if space == "w+" and tuple(start.shape) == (n, c.w_dim):
        start = model.broadcast(start)
    if tuple(start.shape) != shape:
        raise ConfigError(f"starting codes for {space.upper()} must be {' x '.join(map(str, shape))}, "
                          f"got {tuple(start.shape)}")
    if not torch.isfinite(start).all():
        raise ConfigError("starting codes contain NaN or infinite values")
    return start.detach().clone()


@torch.no_grad()
def w_spread(model, samples: int = 1000, generator: torch.Generator | None = None) -> float:
    """sigma_w = sqrt(E ||f(z) - w_avg||^2) over ``samples`` mapped z (the projector's w_std)."""
    z, _, _ = model.draw_z(samples, generator)
    labels = model.labels_for(None, samples, generator)
    w = model.map(z, labels)
    return float((w - model.w_avg).pow(2).sum(1).mean().sqrt())


def optimise(model, images: torch.Tensor, space: str = "w+", steps: int = 200, lr: float = 0.1,
             mse_weight: float = 1.0, noise_weight: float = 1e5, start: torch.Tensor | None = None,
             w_noise: float = 0.05, noise_ramp: float = 0.75, lr_rampup: float = 0.05, lr_rampdown: float = 0.25,
             optimise_noise: bool = True, w_samples: int = 1000, evaluator=None,
             generator: torch.Generator | None = None,
             callback: Callable[[int, dict], None] | None = None) -> Inversion:
    """Invert ``images`` (n x C x H x W in [-1, 1]) into ``space`` (``w`` or ``w+``) of the StyleGAN
    ``model`` by ``steps`` Adam steps on Eq. 2.20 (lpips_mien + ``mse_weight`` MSE) plus
    ``noise_weight`` times :func:`noise_regularisation`; see the module docstring for the schedule.
    ``start``: starting codes (n x w_dim, or n x num_ws x w_dim in W+; default w_avg);
    ``w_noise`` 0 turns the W noise ramp off; ``optimise_noise`` False keeps the noise maps fixed;
    ``evaluator``: the lpips_mien network (default: the shipped one for the image size);
    ``generator`` seeds the noise maps and the W noise; ``callback(step, losses)`` after each step."""
    if space not in ("w", "w+"):
        raise ConfigError(f"GAN inversion works in 'w' or 'w+', not {space!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"the number of inversion steps must be a positive integer, got {steps!r}")
    for name, value in {"lr": lr, "mse_weight": mse_weight, "noise_weight": noise_weight, "w_noise": w_noise}.items():
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"inversion option {name} must be a finite number >= 0, got {value!r}")
    if not hasattr(model, "synthesize") or not hasattr(model, "w_avg"):
        raise ConfigError(f"{getattr(model, 'model_name', type(model).__name__)} is not a GAN; "
                          "optimisation inversion needs a stylegan, cgan or infogan checkpoint")
    target = _check_target(model, images)
    if evaluator is None:
        from mien.evaluator import evaluator_for

        evaluator = evaluator_for(model.config.image_size)
    evaluator = evaluator.to(target.device).requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.requires_grad_(False)
    try:
        return _run(model, target, space, steps, lr, mse_weight, noise_weight, start, w_noise, noise_ramp, lr_rampup,
                    lr_rampdown, optimise_noise, w_samples, evaluator, generator, callback)
    finally:
        for p in trainable:
            p.requires_grad_(True)


def _run(model, target, space, steps, lr, mse_weight, noise_weight, start, w_noise, noise_ramp, lr_rampup,
         lr_rampdown, optimise_noise, w_samples, evaluator, generator, callback) -> Inversion:
    """The optimisation loop of :func:`optimise` (arguments checked, model frozen)."""
    n = len(target)
    sigma_w = w_spread(model, w_samples, generator) if w_noise > 0 else 0.0
    codes = _start_codes(model, n, space, start).requires_grad_(True)
    noise = [m.requires_grad_(optimise_noise) for m in model.noise_maps(n, generator)]
    optimiser = torch.optim.Adam([codes, *(noise if optimise_noise else [])], lr=lr, betas=(0.9, 0.999))
    to_ws = (lambda w: model.broadcast(w)) if space == "w" else (lambda w: w)
    history = {k: [] for k in ("loss", "lpips", "mse", "noise_reg", "lr")}
    with torch.enable_grad():
        for step in range(steps):
            t = step / steps
            step_lr = learning_rate(t, lr, lr_rampdown, lr_rampup)
            for group in optimiser.param_groups:
                group["lr"] = step_lr
            scale = sigma_w * w_noise * max(0.0, 1.0 - t / noise_ramp) ** 2 if noise_ramp > 0 else 0.0
            jitter = torch.randn(codes.shape, generator=generator).to(codes) * scale
            fake = model.synthesize(to_ws(codes + jitter), noise)
            rec, lpips, mse = reconstruction_loss(evaluator, fake, target, mse_weight)
            reg = noise_regularisation(noise) if optimise_noise else torch.zeros(n, device=target.device)
            loss = (rec + noise_weight * reg).sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                for m in noise if optimise_noise else []:
                    m -= m.mean((1, 2, 3), keepdim=True)
                    m *= m.pow(2).mean((1, 2, 3), keepdim=True).rsqrt()
            logged = {"loss": float(loss.detach()) / n, "lpips": float(lpips.detach().mean()), "mse": float(mse.detach().mean()),
                      "noise_reg": float(reg.detach().mean()), "lr": step_lr}
            for k, v in logged.items():
                history[k].append(v)
            if callback is not None:
                callback(step, logged)
    with torch.no_grad():
        codes, noise = codes.detach(), [m.detach() for m in noise]
        ws = to_ws(codes)
        out = model.synthesize(ws, noise)
        _, lpips, mse = reconstruction_loss(evaluator, out, target, mse_weight)
    return Inversion(space, codes, ws.contiguous(), noise, out.clamp(-1, 1), lpips, mse, history)


@torch.no_grad()
def encode(encoder, images: torch.Tensor, space: str = "w+", evaluator=None,
           generator: torch.Generator | None = None) -> Inversion:
    """Inversion by a trained encoder (:class:`mien.models.stylegan.encoder.GANEncoder`):
    W+ codes pSp(x) = E(x) + w_avg, or in W the base w of an e4e encoder (its offsets dropped;
    a pSp encoder has no W code). Reconstructed under noise maps seeded by ``generator``."""
    if space not in ("w", "w+"):
        raise ConfigError(f"GAN inversion works in 'w' or 'w+', not {space!r}")
    if not hasattr(encoder, "offsets"):
        raise ConfigError(f"{getattr(encoder, 'model_name', type(encoder).__name__)} is not a GAN encoder; pass the "
                          "checkpoint of a `mien train psp/...` run")
    if space == "w" and encoder.config.variant != "e4e":
        raise ConfigError("a pSp encoder predicts W+ codes only; use space w+ or an e4e encoder (model.variant=e4e)")
    model = encoder.generator
    target = _check_target(model, images)
    ws = encoder.encode(target)
    codes = ws[:, 0] if space == "w" else ws
    ws = model.broadcast(codes) if space == "w" else ws
    noise = model.noise_maps(len(target), generator)
    out = model.synthesize(ws, noise)
    if evaluator is None:
        from mien.evaluator import evaluator_for

        evaluator = evaluator_for(model.config.image_size)
    _, lpips, mse = reconstruction_loss(evaluator.to(target.device), out, target, 1.0)
    return Inversion(space, codes, ws.contiguous(), noise, out.clamp(-1, 1), lpips, mse)


def save_inversion(result: Inversion, folder, info: dict) -> Path:
    """Write ``codes.safetensors`` (``codes``, ``ws``, ``noise_<i>`` per styled layer, ``images``)
    and its JSON sidecar ``codes.json`` (space, the per-image lpips_mien and MSE, and ``info``:
    method, generator path, ...) into ``folder``, each atomically; returns the folder."""
    from safetensors.torch import save as save_tensors

    folder = ensure_writable_dir(folder)
    tensors = {"codes": result.codes, "ws": result.ws, "images": result.images,
               **{f"noise_{i}": m for i, m in enumerate(result.noise)}}
    blob = save_tensors({k: v.detach().cpu().float().clone() for k, v in tensors.items()})
    sidecar = {"format": FORMAT, "space": result.space, "n": len(result.codes), **info,
               "lpips_mien": result.lpips.tolist(), "mse": result.mse.tolist(),
               "final_loss": result.history["loss"][-1] if result.history.get("loss") else None}
    atomic_write_bytes(folder / "codes.safetensors", blob)
    atomic_write_text(folder / "codes.json", json.dumps(sidecar, indent=2))
    return folder


def load_inversion(folder) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the sidecar written by :func:`save_inversion` (never unpickled)."""
    return read_tensor_files(folder, "codes", FORMAT, "mien invert")
