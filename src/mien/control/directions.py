"""Latent directions: axis traversals (one latent dimension varied, the others held), the
standard picture of disentanglement (Zou ch. 2; lecture 002 on structured latent spaces)."""

from __future__ import annotations

import torch

from mien.errors import ConfigError


def axis_traversal(z: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """Codes (len(dims) * len(values)) x D: z with dimension d set to each value, row by row."""
    if z.dim() != 1:
        raise ConfigError("axis traversal needs a vector latent code; this model's latent is spatial")
    bad = [d for d in dims if not 0 <= d < len(z)]
    if bad:
        raise ConfigError(f"latent dimension {bad[0]} does not exist; this model has dimensions 0..{len(z) - 1}")
    codes = z.repeat(len(dims) * len(values), 1)
    for r, d in enumerate(dims):
        codes[r * len(values):(r + 1) * len(values), d] = values
    return codes
