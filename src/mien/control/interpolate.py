"""Latent interpolation (lecture 002, L1: walking the latent space between two codes).

``lerp`` is the straight line; ``slerp`` follows the great circle between the two codes (Shoemake
1985), which keeps the norm typical of a Gaussian prior in high dimension.
"""

from __future__ import annotations

import torch

from mien.errors import ConfigError


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(1 - t) a + t b for each t (T) -> T x shape."""
    t = t.reshape(-1, *([1] * a.dim()))
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """sin((1-t) w)/sin w a + sin(t w)/sin w b with cos w = <a, b>/(|a||b|); lerp when w ~ 0."""
    fa, fb = a.flatten(), b.flatten()
    cos = (fa @ fb / (fa.norm() * fb.norm()).clamp_min(1e-12)).clamp(-1, 1)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:
        return lerp(a, b, t)
    t = t.reshape(-1, *([1] * a.dim()))
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


METHODS = {"lerp": lerp, "slerp": slerp}


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int = 8, method: str = "lerp") -> torch.Tensor:
    """``steps`` codes from a to b inclusive."""
    if method not in METHODS:
        raise ConfigError(f"unknown interpolation {method!r}; choose lerp or slerp")
    if steps < 2:
        raise ConfigError("interpolation needs at least 2 steps")
    return METHODS[method](a, b, torch.linspace(0, 1, steps, dtype=a.dtype))
