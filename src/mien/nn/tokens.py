"""The token encoder E_phi of CVQVAE (Zou thesis §6.3.1, Fig. 6.1; digest D.1): residual blocks
whose every input is the feature map concatenated channel-wise with one learnable token image per
label, taken from the set of the label's value ("we have two sets of learnable tokens for E_phi
that each consist of five images, each image associated with a residual block"; a soft label
y in [0, 1] mixes the two sets, (1 - y) t_0 + y t_1, as :class:`~mien.nn.adain.TokenDecoder`).

Fig. 6.1 has five blocks; here each resolution level of ``widths`` is one stride-2 block plus
``blocks`` more at its resolution, so a 32 px face reaches the 8 x 8 map of the thesis in two levels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mien.nn.adain import TokenDecoder


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, c), c)  # token channels make c odd


class DownResBlock(nn.Module):
    """norm -> SiLU -> conv3x3 (stride 2 when ``down``) -> norm -> SiLU -> conv3x3, plus a 1x1 skip
    of the (average-pooled) input."""

    def __init__(self, c_in: int, c_out: int, down: bool = True):
        super().__init__()
        self.down = down
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, stride=2 if down else 1, padding=1)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(h))))))
        return out + self.skip(F.avg_pool2d(h, 2) if self.down else h)


class TokenEncoder(nn.Module):
    """(x, y) -> a map of ``out_channels`` at image_size / 2^len(widths): a 3x3 input convolution,
    then :class:`DownResBlock` s, each fed [h, one token image per label] (``token_channels`` each)."""

    def __init__(self, image_size: int, in_channels: int, widths: list[int], out_channels: int, n_labels: int,
                 token_channels: int = 1, blocks: int = 0):
        super().__init__()
        self.inp = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        extra = n_labels * token_channels
        self.blocks = nn.ModuleList()
        resolutions, c, r = [], widths[0], image_size
        for w in widths:
            for k in range(blocks + 1):
                self.blocks.append(DownResBlock(c + extra, w, down=k == 0))
                resolutions.append(r)
                c, r = w, r // 2 if k == 0 else r
        self.out = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, out_channels, 1))
        self.tokens = nn.ParameterList(
            [nn.Parameter(torch.randn(n_labels, 2, token_channels, q, q) * 0.5) for q in resolutions])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block, token in zip(self.blocks, self.tokens):
            h = block(torch.cat([h, TokenDecoder.mix(token, y).flatten(1, 2)], dim=1))
        return self.out(h)
