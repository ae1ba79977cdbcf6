"""The encoder and decoder of Joy et al. 2021 ("Capturing label characteristics in VAEs", the
authors' CelebA networks at 64 px): the thesis's CCVAE baseline runs "the implementation of the
authors ... the sizes of the input/output layers have been modified accordingly" (Zou §5.4).

Encoder: per level of ``widths`` a 4x4 stride-2 convolution and ReLU, then a convolution over the
whole s x s bottleneck to ``hidden`` channels and ReLU (Joy et al.: 32, 32, 64, 64 channels, 256
hidden). Decoder, mirrored: Linear(in, hidden) and ReLU, a transposed convolution from 1 x 1 to
s x s, then 4x4 stride-2 transposed convolutions with ReLU between them; the output is linear
(mien's images; Joy et al. take a sigmoid of it for their [0, 1] likelihood). No normalisation
layers, as theirs.
"""

from __future__ import annotations

import torch
from torch import nn

from mien.nn.conv import check_geometry


class JoyEncoder(nn.Module):
    """Image (B x C x S x S) -> features (B x hidden)."""

    def __init__(self, image_size: int, in_channels: int, widths: list[int], hidden: int):
        super().__init__()
        s = check_geometry(image_size, widths)
        layers, c = [], in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 4, stride=2, padding=1), nn.ReLU()]
            c = w
        self.net = nn.Sequential(*layers, nn.Conv2d(c, hidden, s), nn.ReLU(), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class JoyDecoder(nn.Module):
    """Vector (B x in_features) -> image (B x out_channels x S x S)."""

    def __init__(self, image_size: int, out_channels: int, widths: list[int], in_features: int, hidden: int):
        super().__init__()
        s = check_geometry(image_size, widths)
        rev = list(reversed(widths))
        layers = [nn.Linear(in_features, hidden), nn.ReLU(), nn.Unflatten(1, (hidden, 1, 1)),
                  nn.ConvTranspose2d(hidden, rev[0], s), nn.ReLU()]
        for c, w in zip(rev, rev[1:]):
            layers += [nn.ConvTranspose2d(c, w, 4, stride=2, padding=1), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(rev[-1], out_channels, 4, stride=2, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.net(v)
