"""Unconditional and label-controlled sampling of the 4D expression DDPM (Zou thesis §3.4.2,
Alg. 1), through the plug-and-play reverse step. Sequences are model units (B x F x N x 3) at the
interface and standardised coordinates inside."""

from __future__ import annotations

import torch

from mien.diffusion.plug_and_play import label_score, refine, reverse
from mien.errors import ConfigError


def noise(shape, generator, device) -> torch.Tensor:
    """N(0, I) drawn on the CPU generator (the same draws on every device), then moved."""
    return torch.randn(shape, generator=generator).to(device)


def sample_x_T(model, n: int, frames: int, generator) -> torch.Tensor:
    """x_T ~ N(0, I) for ``n`` sequences of ``frames`` frames (standardised, B x F x 3N)."""
    if n < 1:
        raise ConfigError(f"n={n}: ask for at least one sequence")
    model.check_frames(frames)
    return noise((n, frames, 3 * model.config.landmarks), generator, model.coord_mean.device)


@torch.no_grad()
def unconditional(model, n: int, frames: int, generator=None) -> torch.Tensor:
    """x_T ~ N(0, I), then R(x_t, t) down to x_0."""
    return model.denormalise(reverse(model, sample_x_T(model, n, frames, generator), generator=generator))


def class_target(model, label, direction=None) -> tuple[int, str]:
    """The classifier index and type of a label: type I for a label alone, type S (2 y + d) with a
    sequence type (§3.6)."""
    y = model.label_index(label)
    if direction is None:
        return y, "I"
    return 2 * y + model.direction_index(direction), "S"


@torch.no_grad()
def label_control(model, label, n: int, frames: int, direction=None, generator=None, **guidance) -> torch.Tensor:
    """Alg. 1: x_T ~ N(0, I); each reverse step is refined toward p_phi(y | x, t - 1)."""
    y, kind = class_target(model, label, direction)
    x_T = sample_x_T(model, n, frames, generator)
    target = torch.full((n,), y, device=x_T.device)
    hook = refine(model, label_score(model, target, kind), **guidance)
    return model.denormalise(reverse(model, x_T, hook, generator))
