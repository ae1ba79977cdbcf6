"""Perceptual distances on the evaluator's features, for models (a perceptual training loss)
and metrics (``lpips_mien``) alike."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def lpips_distance(evaluator, a: torch.Tensor, b: torch.Tensor, layer_weights=None) -> torch.Tensor:
    """The LPIPS formula (Haas Eq. 2.12) on evaluator features, per image and differentiable (a
    perceptual training loss): per layer l, unit-normalise the channel vectors, take
    || w_l (y_l - y0_l) ||^2 averaged over positions, and sum over the four evaluator stages
    (``layer_weights``, default 1/4 each). 0 for identical images."""
    taps_a, taps_b = evaluator.taps(a), evaluator.taps(b)
    weights = layer_weights or [1 / len(taps_a)] * len(taps_a)
    return sum(w * ((F.normalize(ya, dim=1, eps=1e-10) - F.normalize(yb, dim=1, eps=1e-10)) ** 2).sum(1).mean((1, 2))
               for w, ya, yb in zip(weights, taps_a, taps_b))
