"""Latent directions: axis traversals (one latent dimension varied, the others held), the
standard picture of disentanglement (Zou ch. 2; lecture 002 on structured latent spaces)."""

from __future__ import annotations

import torch

from mien.errors import ConfigError


def axis_traversal(z: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """Codes (len(dims) * steps) x D: z with dimension d set to each value, row by row; ``values``
    is one sweep for all rows (steps) or one per row (len(dims) x steps)."""
    if z.dim() != 1:
        raise ConfigError("axis traversal needs a vector latent code; this model's latent is spatial")
    bad = [d for d in dims if not 0 <= d < len(z)]
    if bad:
        raise ConfigError(f"latent dimension {bad[0]} does not exist; this model has dimensions 0..{len(z) - 1}")
    values = values.expand(len(dims), values.shape[-1]) if values.dim() == 1 else values
    steps = values.shape[1]
    codes = z.repeat(len(dims) * steps, 1)
    for r, d in enumerate(dims):
        codes[r * steps:(r + 1) * steps, d] = values[r]
    return codes


def data_ranges(codes: torch.Tensor, dims: list[int], steps: int, q: float = 0.02) -> torch.Tensor:
    """Per-dimension sweeps over the q..1-q quantiles of encoded data (len(dims) x steps): the
    range a regularised or non-standard latent dimension actually uses."""
    lo = torch.quantile(codes[:, dims], q, dim=0)
    hi = torch.quantile(codes[:, dims], 1 - q, dim=0)
    return lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, steps)[None]


def dimension_labels(model, dims: list[int], steps: int) -> list[str]:
    """Row captions for a traversal grid: 'z3', or 'z1 yaw' for a dimension an AR-VAE ties to an attribute."""
    by_dim = {d: n for n, d in (model.attribute_dims() if hasattr(model, "attribute_dims") else {}).items()}
    return [f"z{d} {by_dim.get(d, '')}".strip() if j == 0 else "" for d in dims for j in range(steps)]
