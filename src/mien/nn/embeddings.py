"""Sinusoidal embeddings (Vaswani et al. 2017, §3.5; the DDPM timestep embedding of Ho et al. 2020)."""

from __future__ import annotations

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: [cos(t w_k), sin(t w_k)]."""
    half = dim // 2
    freqs = torch.exp(-torch.log(torch.tensor(max_period)) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
    return nn.functional.pad(emb, (0, dim % 2))


def position_embedding(length: int, dim: int, device=None) -> torch.Tensor:
    """PE of positions 0 .. length - 1 (length x dim), the same sinusoids as the timesteps."""
    return timestep_embedding(torch.arange(length, device=device).float(), dim)
