"""Convolutional encoder and decoder stacks shared by the autoencoder families (32, 64, 128 px).

Each resolution level is a stride-2 convolution (or transposed convolution) followed by
``blocks`` residual blocks (GroupNorm, SiLU, 3x3 conv, twice, with a skip); ``widths`` gives the
channels per level, so width and depth are set from the config.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
                                  _norm(c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


def check_geometry(image_size: int, widths) -> int:
    """Spatial size of the bottleneck; the image must halve cleanly at every level."""
    from mien.errors import ConfigError

    if not widths:
        raise ConfigError("widths must list at least one channel count")
    s = image_size
    for _ in widths:
        if s % 2:
            raise ConfigError(f"image_size {image_size} does not halve {len(widths)} times; use 32, 64 or 128")
        s //= 2
    return s


class ConvEncoder(nn.Module):
    """Image (B x C x S x S) -> feature map (B x widths[-1] x S/2^L x S/2^L)."""

    def __init__(self, in_channels: int, widths: list[int], blocks: int = 1):
        super().__init__()
        layers, c = [nn.Conv2d(in_channels, widths[0], 3, padding=1)], widths[0]
        for w in widths:
            layers += [nn.Conv2d(c, w, 4, stride=2, padding=1)] + [ResBlock(w) for _ in range(blocks)]
            c = w
        layers += [_norm(c), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x):
        return self.net(x)


class ConvDecoder(nn.Module):
    """Feature map (B x widths[-1] x s x s) -> image (B x out_channels x s*2^L x s*2^L), mirroring
    the encoder."""

    def __init__(self, out_channels: int, widths: list[int], blocks: int = 1):
        super().__init__()
        rev = list(reversed(widths))
        layers, c = [], rev[0]
        for w in rev[1:] + [rev[-1]]:
            layers += [ResBlock(c) for _ in range(blocks)] + [nn.ConvTranspose2d(c, w, 4, stride=2, padding=1)]
            c = w
        layers += [_norm(c), nn.SiLU(), nn.Conv2d(c, out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, h):
        return self.net(h)


class VectorEncoder(nn.Module):
    """Image -> vector of ``out_features`` (flattened conv features through a linear layer)."""

    def __init__(self, image_size: int, in_channels: int, widths: list[int], out_features: int, blocks: int = 1):
        super().__init__()
        s = check_geometry(image_size, widths)
        self.conv = ConvEncoder(in_channels, widths, blocks)
        self.fc = nn.Linear(widths[-1] * s * s, out_features)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


class VectorDecoder(nn.Module):
    """Vector of ``in_features`` -> image, through a linear layer to the bottleneck map."""

    def __init__(self, image_size: int, out_channels: int, widths: list[int], in_features: int, blocks: int = 1):
        super().__init__()
        self.s = check_geometry(image_size, widths)
        self.c = widths[-1]
        self.fc = nn.Linear(in_features, self.c * self.s * self.s)
        self.conv = ConvDecoder(out_channels, widths, blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(self.fc(z).view(-1, self.c, self.s, self.s))
