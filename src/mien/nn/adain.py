"""AdaIN and the token decoder of JDVAE (Zou thesis §5.3.1, Fig. 5.1; digest C.1), shared by the
semi-supervised families.

- :class:`AdaIN`: sigma(s) (f - mu(f)) / sigma(f) + mu(s) with per-channel statistics over the
  spatial positions (Huang & Belongie 2017; Zou Eq. 2.43), the style's scale and shift given by
  an FC layer of the code (§5.3.1: "AdaIN injects the latent variable z to each layer of the
  decoder through a fully connected layer").
- :class:`StyledResBlock`: a residual block whose input is the feature map concatenated
  channel-wise with the block's token image, 2x nearest upsampling, two 3x3 convolutions each
  after AdaIN (or GroupNorm in the no-AdaIN ablation of §5.4) and SiLU, and a 1x1 skip.
- :class:`TokenDecoder`: one FC layer on [features, z, one scalar token per label] (or [features,
  z, y] in the no-tokens ablation, where "y is then just used as an input of the fully connected
  layer of the decoder", §5.4) to the bottleneck map, then one :class:`StyledResBlock` per
  resolution level (plus ``blocks`` more per level), each fed one token image per label, and a
  last normalisation (AdaIN) and 3x3 convolution to the image. A label
  owns one token set per class; a soft label y in [0, 1] (Gumbel-softmax) mixes the two sets,
  (1 - y) t_0 + y t_1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mien.nn.conv import check_geometry


class AdaIN(nn.Module):
    """Adaptive instance normalisation of ``channels`` maps by a style vector of ``style_dim``
    (Zou Eq. 2.43): (1 + gamma(s)) * instance_norm(f) + beta(s), [gamma, beta] = FC(s)."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.fc = nn.Linear(style_dim, 2 * channels)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, f: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.fc(style).chunk(2, dim=1)
        return (1 + gamma)[..., None, None] * self.norm(f) + beta[..., None, None]


class _GroupNorm(nn.GroupNorm):
    """GroupNorm with the AdaIN call signature (the style is ignored): the no-AdaIN ablation."""

    def __init__(self, channels: int):
        super().__init__(math.gcd(8, channels), channels)

    def forward(self, f, style=None):
        return super().forward(f)


class StyledResBlock(nn.Module):
    """[h, token] -> (up 2x) -> norm(style) -> SiLU -> conv3x3 -> norm(style) -> SiLU -> conv3x3,
    plus a 1x1 skip of the (upsampled) input; norm is AdaIN of the style or, with
    ``adain=False``, GroupNorm."""

    def __init__(self, c_in: int, c_out: int, style_dim: int, adain: bool = True, up: bool = True):
        super().__init__()
        norm = (lambda c: AdaIN(c, style_dim)) if adain else _GroupNorm
        self.up = up
        self.norm1, self.conv1 = norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, h: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if self.up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        out = self.conv1(F.silu(self.norm1(h, style)))
        out = self.conv2(F.silu(self.norm2(out, style)))
        return out + self.skip(h)


class TokenDecoder(nn.Module):
    """d_theta of Fig. 5.1: (features, z, y) -> image.

    ``features`` (B x feature_dim, e.g. JDVAE's u or CCVAE's z_c; may be 0) and ``z`` (B x z_dim)
    feed the first FC layer together with one scalar token per label (``tokens``) or with y
    itself; AdaIN styles come from z (``adain``). ``y`` is B x n_labels in [0, 1]. With
    ``n_labels`` = 0 the decoder is p(x | features, z) (CCVAE's, where y is not in the decoder)."""

    def __init__(self, image_size: int, out_channels: int, widths: list[int], feature_dim: int, z_dim: int,
                 n_labels: int, tokens: bool = True, adain: bool = True, token_channels: int = 1, blocks: int = 0):
        super().__init__()
        self.s = check_geometry(image_size, widths)
        self.n_labels, self.use_tokens, self.token_channels = n_labels, tokens and n_labels > 0, token_channels
        rev = list(reversed(widths))
        self.c = rev[0]
        self.fc = nn.Linear(feature_dim + z_dim + n_labels, self.c * self.s * self.s)
        extra = n_labels * token_channels if self.use_tokens else 0
        self.blocks = nn.ModuleList()
        resolutions, c, r = [], rev[0], self.s
        for w in rev[1:] + [rev[-1]]:
            for k in range(blocks + 1):
                up = k == 0
                self.blocks.append(StyledResBlock(c + extra, w if up else c, z_dim, adain=adain, up=up))
                resolutions.append(r)
                c = w if up else c
                r = r * 2 if up else r
        self.out_norm = AdaIN(c, z_dim) if adain else _GroupNorm(c)  # AdaIN in every layer (§5.3.1)
        self.out = nn.Conv2d(c, out_channels, 3, padding=1)
        if self.use_tokens:
            # one set per label and class: a scalar (first FC layer) and one image per residual block
            self.scalar_tokens = nn.Parameter(torch.randn(n_labels, 2) * 0.5)
            self.image_tokens = nn.ParameterList(
                [nn.Parameter(torch.randn(n_labels, 2, token_channels, q, q) * 0.5) for q in resolutions])

    @staticmethod
    def mix(tokens: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-class tokens (L x 2 x ...) selected by y (B x L in [0, 1]): (1 - y) t_0 + y t_1."""
        shape = (*y.shape, *([1] * (tokens.dim() - 2)))
        y = y.reshape(shape)
        return (1 - y) * tokens[:, 0] + y * tokens[:, 1]

    def forward(self, features: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        parts = [features, z]
        if self.n_labels:
            parts.append(self.mix(self.scalar_tokens, y) if self.use_tokens else y)
        h = self.fc(torch.cat(parts, dim=1)).view(-1, self.c, self.s, self.s)
        for block, token in zip(self.blocks, self.image_tokens if self.use_tokens else [None] * len(self.blocks)):
            if token is not None:
                h = torch.cat([h, self.mix(token, y).flatten(1, 2)], dim=1)
            h = block(h, z)
        return self.out(F.silu(self.out_norm(h, z)))
