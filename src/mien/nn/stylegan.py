"""The StyleGAN2 generator (Karras et al. 2020; Haas thesis Ch. 2.3, digest §1.2): a mapping
network f: Z -> W and a synthesis network g: W+ -> X built from modulated convolutions.

Glossary:

    z        latent code, N(0, I), pixel-normalised before the mapping network
    w        intermediate code f(z) (w_dim); W+ holds one w per style input (num_ws x w_dim)
    s        the style of one layer, s = A(w) (its affine map, bias initialised to 1);
             S (StyleSpace) is every layer's style concatenated
    w'       the modulated weight s_i w_ijk, i input channel, j output channel, k tap (Eq. 2.17)
    w''      the demodulated weight w'_ijk / sqrt(sum_ik w'^2_ijk + eps) (Eq. 2.17)

Modulation is computed one of two equivalent ways (tested equal):

- non-fused (default, faster on CPU): scale the input by s, convolve with the shared weight,
  then scale each output channel j by d_j = rsqrt(sum_i s_i^2 sum_k w_ijk^2 + eps);
- fused (``fused=True``, StyleGAN2's grouped convolution): build w'' per sample and convolve
  with groups = batch size.

Layout (as StyleGAN2 config-f, so its weights map one to one): a learned 4 x 4 constant, then per
resolution 4, 8, ..., S a styled 3 x 3 convolution (an up-sampling one from 8 on), a second one,
and a 1 x 1 toRGB whose outputs are up-sampled and summed (the skip architecture). Each styled
layer adds per-pixel noise times a learned strength, a bias and the leaky ReLU. num_ws =
2 log2(S) - 2: the toRGB of a block shares its w with the next block's first convolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mien.nn.equalized import EqualLinear, blur, fir_kernel, lrelu, upsample2x

EPS = 1e-8


def pixel_norm(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) over the feature dimension (Karras et al. 2018, Eq. 4.2)."""
    return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + eps)


class MappingNetwork(nn.Module):
    """f: z (+ a label embedding) -> w: pixel norm, then ``layers`` equalised linear layers with
    leaky ReLU at learning-rate multiplier ``lr_mul`` (0.01 in StyleGAN2). With ``num_classes`` the
    label's embedding, second-moment normalised, is concatenated to z (StyleGAN2-ADA's
    conditioning; Mirza & Osindero 2014's cGAN, Zou Eq. 2.39)."""

    def __init__(self, z_dim: int, w_dim: int, layers: int, lr_mul: float = 0.01, num_classes: int = 0):
        super().__init__()
        self.embed = EqualLinear(num_classes, w_dim) if num_classes else None
        dims = [z_dim + (w_dim if num_classes else 0)] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, activate=True) for a, b in zip(dims, dims[1:])])
        self.num_classes = num_classes

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = pixel_norm(z)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional mapping network needs labels")
            onehot = F.one_hot(labels.long(), self.num_classes).to(z)
            x = torch.cat([x, pixel_norm(self.embed(onehot))], 1)
        return self.net(x)


class ModulatedConv2d(nn.Module):
    """Convolution whose weight is modulated by a style s and (optionally) demodulated (Eq. 2.17).
    ``up`` doubles the resolution: a transposed stride-2 convolution then the FIR filter
    (``resample: fir``, StyleGAN2), or bilinear up-sampling then the convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 demodulate: bool = True, up: bool = False, resample: str = "fir", fused: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.k, self.demodulate, self.up, self.resample, self.fused = kernel_size, demodulate, up, resample, fused
        self.register_buffer("kernel", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """x: n x in x h x w, s: the style A(w) (n x in)."""
        weight = self.weight * self.scale
        if self.fused:
            return self._fused(x, s, weight)
        x = self._conv(x * s[:, :, None, None], weight)
        if self.demodulate:
            d = torch.rsqrt(s.pow(2) @ weight.pow(2).sum((2, 3)).T + EPS)  # n x out
            x = x * d[:, :, None, None]
        return self._blur(x)

    def _fused(self, x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        w = weight[None] * s[:, None, :, None, None]  # n x out x in x k x k
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum((2, 3, 4)) + EPS)[:, :, None, None, None]
        out = w.shape[1]
        x = x.reshape(1, n * c, *x.shape[2:])
        if self.up and self.resample == "fir":
            w = w.transpose(1, 2).reshape(n * c, out, self.k, self.k)
            x = F.conv_transpose2d(x, w, stride=2, groups=n)
        else:
            if self.up:
                x = upsample2x(x, self.resample)
            x = F.conv2d(x, w.reshape(n * out, c, self.k, self.k), padding=self.k // 2, groups=n)
        return self._blur(x.reshape(n, out, *x.shape[2:]))

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.up and self.resample == "fir":
            return F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        if self.up:
            x = upsample2x(x, self.resample)
        return F.conv2d(x, weight, padding=self.k // 2)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        """The FIR filter after a transposed convolution (pad (1, 1) for 3 x 3 and 4 taps), gain 4."""
        if not (self.up and self.resample == "fir"):
            return x
        p = (self.kernel.shape[0] - 2) - (self.k - 1)
        return blur(x, self.kernel, ((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)


class StyledLayer(nn.Module):
    """Modulated 3 x 3 convolution, noise times a learned strength (zero at start), bias, lrelu."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, up: bool = False, resample: str = "fir",
                 fused: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up, resample=resample, fused=fused)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, s: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x, s)
        if noise is None:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return lrelu(x + self.noise_strength * noise, self.bias)


class ToRGB(nn.Module):
    """1 x 1 modulated convolution without demodulation, plus a bias; the skip architecture adds the
    up-sampled RGB of the previous resolution."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resample: str = "fir", fused: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False, fused=fused)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.resample = resample
        self.register_buffer("kernel", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, s: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        rgb = self.conv(x, s) + self.bias.reshape(1, -1, 1, 1)
        return rgb if skip is None else rgb + upsample2x(skip, self.resample, self.kernel)


class Synthesis(nn.Module):
    """g: W+ -> image. ``channels`` lists the feature maps at resolutions 4, 8, ..., image_size."""

    def __init__(self, image_size: int, channels: list[int], w_dim: int, out_channels: int = 3,
                 resample: str = "fir", fused: bool = False):
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, channels[0], 4, 4))
        self.layers, self.to_rgb = nn.ModuleList([StyledLayer(channels[0], channels[0], w_dim, fused=fused)]), \
            nn.ModuleList([ToRGB(channels[0], out_channels, w_dim, resample, fused)])
        for c_in, c_out in zip(channels, channels[1:]):
            self.layers.extend([StyledLayer(c_in, c_out, w_dim, up=True, resample=resample, fused=fused),
                                StyledLayer(c_out, c_out, w_dim, fused=fused)])
            self.to_rgb.append(ToRGB(c_out, out_channels, w_dim, resample, fused))
        self.image_size, self.num_ws = image_size, 2 * len(channels)

    def set_fused(self, fused: bool) -> None:
        """Switch every modulated convolution between the fused and the non-fused path."""
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.fused = fused

    def style_layers(self) -> list[ModulatedConv2d]:
        """The modulated convolutions in style order: s_0 .. s_{L-1} (StyleSpace's layers)."""
        order = [self.layers[0].conv, self.to_rgb[0].conv]
        for i, rgb in enumerate(self.to_rgb[1:]):
            order += [self.layers[1 + 2 * i].conv, self.layers[2 + 2 * i].conv, rgb.conv]
        return order

    def style_ws(self) -> list[int]:
        """For each style layer, the index of the w in W+ it reads (toRGB shares the next conv's)."""
        index = [0, 1]
        for i in range(len(self.to_rgb) - 1):
            index += [1 + 2 * i, 2 + 2 * i, 3 + 2 * i]
        return index

    def styles(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """s = A(w) for every style layer (ws: n x num_ws x w_dim)."""
        return [conv.affine(ws[:, i]) for conv, i in zip(self.style_layers(), self.style_ws())]

    def noise_shapes(self) -> list[tuple[int, int]]:
        """The resolution of each styled layer's noise input."""
        return [(4, 4)] + [(4 * 2 ** (1 + i // 2),) * 2 for i in range(len(self.layers) - 1)]

    def from_styles(self, styles: list[torch.Tensor], noise: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        """The image of the per-layer styles (StyleSpace); ``noise``: one map per styled layer or None."""
        noise = noise if noise is not None else [None] * len(self.layers)
        x = self.const.expand(styles[0].shape[0], -1, -1, -1)
        x = self.layers[0](x, styles[0], noise[0])
        rgb, k = self.to_rgb[0](x, styles[1]), 2
        for i, to_rgb in enumerate(self.to_rgb[1:]):
            x = self.layers[1 + 2 * i](x, styles[k], noise[1 + 2 * i])
            x = self.layers[2 + 2 * i](x, styles[k + 1], noise[2 + 2 * i])
            rgb, k = to_rgb(x, styles[k + 2], rgb), k + 3
        return rgb

    def forward(self, ws: torch.Tensor, noise: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        return self.from_styles(self.styles(ws), noise)
