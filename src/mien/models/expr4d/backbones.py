"""Sequence networks of Zou thesis ch. 3: the bidirectional transformer (BiT, §3.4.1, Fig. 3.1) and
the two ablation backbones of Tab. 3.6 (a causal transformer and a 1-D U-Net over time).

Every network maps noisy frames x_t (B x F x D), a timestep t (B; 0-based, -1 = clean data, so
the embedded index t + 1 is the thesis's t) and a frame mask (B x F, True on real frames) either
to one output per frame (the noise approximator eps_theta) or, with ``pooled=True``, to one
vector per sequence (the guidance classifier with its [CLS] token, §3.4.2, and the text head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mien.nn.embeddings import position_embedding, timestep_embedding
from mien.errors import ConfigError

BACKBONES = ("bit", "causal", "unet")


class TimeEmbedding(nn.Module):
    """TE(t): sinusoidal embedding of the 1-based timestep t + 1, then an MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t.float() + 1, self.dim))


class FrameTransformer(nn.Module):
    """BiT (``causal=False``): FE(x_t) + PE(1..F) + TE(t), summed per frame, through a BERT-style
    encoder with no causal mask (Fig. 3.1). ``causal=True`` is the masked Transformer of Tab. 3.6.
    ``pooled``: a learnable classification token is appended after the frames (so that it sees
    every frame under the causal mask too) and its output is returned (§3.4.2)."""

    def __init__(self, d_in: int, d_out: int, d_model: int, layers: int, heads: int, ff: int, dropout: float,
                 causal: bool = False, pooled: bool = False):
        super().__init__()
        self.causal, self.pooled, self.d_model = causal, pooled, d_model
        self.feature = nn.Linear(d_in, d_model)  # FE
        self.time = TimeEmbedding(d_model)  # TE
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if pooled else None
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, d_out)

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, Fr, _ = x.shape
        position = position_embedding(Fr, self.d_model, x.device)  # PE
        te = self.time(t)[:, None]
        h = self.feature(x) + position[None] + te
        pad = torch.zeros(B, Fr, dtype=torch.bool, device=x.device) if mask is None else ~mask
        if self.pooled:
            h = torch.cat([h, self.cls.expand(B, -1, -1) + te], 1)
            pad = F.pad(pad, (0, 1), value=False)
        n = h.shape[1]
        attn = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1) if self.causal else None
        h = self.norm(self.encoder(h, mask=attn, src_key_padding_mask=pad))
        return self.out(h[:, -1] if self.pooled else h)


def _groups(c: int) -> int:
    return next(g for g in (8, 4, 2, 1) if c % g == 0)


class ResBlock1d(nn.Module):
    """GroupNorm-SiLU-Conv1d twice, with the timestep embedding added in between (DDPM's block)."""

    def __init__(self, c_in: int, c_out: int, t_dim: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.GroupNorm(_groups(c_in), c_in), nn.SiLU(), nn.Conv1d(c_in, c_out, 3, padding=1))
        self.time = nn.Linear(t_dim, c_out)
        self.conv2 = nn.Sequential(nn.GroupNorm(_groups(c_out), c_out), nn.SiLU(), nn.Conv1d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x) + self.time(temb)[:, :, None]
        return self.conv2(h) + self.skip(x)


class UNet1d(nn.Module):
    """The 1-D U-Net of Tab. 3.6 over the time axis: the 3N landmark coordinates are the channels,
    each level halves the number of frames (sequences are padded by repeating the last frame to a
    multiple of 2^(levels - 1) and cropped back). ``pooled``: the down path and a masked mean over
    time give one vector per sequence."""

    def __init__(self, d_in: int, d_out: int, widths: list[int], pooled: bool = False):
        super().__init__()
        self.pooled, self.levels = pooled, len(widths)
        t_dim = widths[0] * 4
        self.time = nn.Sequential(nn.Linear(widths[0], t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.t_in = widths[0]
        self.inp = nn.Conv1d(d_in, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = widths[0]
        for i, w in enumerate(widths):
            self.down.append(ResBlock1d(c, w, t_dim))
            c = w
            if i + 1 < len(widths):
                self.downsample.append(nn.Conv1d(c, c, 3, stride=2, padding=1))
        self.mid = ResBlock1d(c, c, t_dim)
        if pooled:
            self.out = nn.Linear(c, d_out)
            return
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(ResBlock1d(c + w, w, t_dim))
            c = w
            if i > 0:
                self.upsample.append(nn.Conv1d(c, widths[i - 1], 3, padding=1))
                c = widths[i - 1]
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv1d(c, d_out, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, Fr, _ = x.shape
        mult = 2 ** (self.levels - 1)
        padded = -(-Fr // mult) * mult
        h = F.pad(x.transpose(1, 2), (0, padded - Fr), mode="replicate")
        temb = self.time(timestep_embedding(t.float() + 1, self.t_in))
        h = self.inp(h)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, temb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, temb)
        if self.pooled:
            m = torch.ones(B, 1, padded, device=x.device) if mask is None else F.pad(mask.float()[:, None], (0, padded - Fr))
            m = F.adaptive_max_pool1d(m, h.shape[-1])
            return self.out((h * m).sum(-1) / m.sum(-1).clamp_min(1))
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], 1), temb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(h)[:, :, :Fr].transpose(1, 2)


def make_network(kind: str, d_in: int, d_out: int, *, d_model: int, layers: int, heads: int, ff: int,
                 dropout: float, unet_widths: list[int], pooled: bool = False) -> nn.Module:
    """The backbone named by ``kind`` (bit, causal or unet)."""
    if kind in ("bit", "causal"):
        return FrameTransformer(d_in, d_out, d_model, layers, heads, ff, dropout, causal=kind == "causal",
                                pooled=pooled)
    if kind == "unet":
        return UNet1d(d_in, d_out, unet_widths, pooled=pooled)
    raise ConfigError(f"unknown backbone {kind!r}; choose one of {', '.join(BACKBONES)}")
