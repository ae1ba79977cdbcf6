"""Equalised-learning-rate layers and FIR resampling of StyleGAN2 (Karras et al. 2018, Sec. 4.1;
Karras et al. 2020, App. B; Haas thesis Ch. 2.3), in plain PyTorch (no custom CUDA ops).

Glossary:

    fan_in    inputs per output unit (in_features, or in_channels * k * k)
    lr_mul    learning-rate multiplier: the stored weight is N(0, 1) / lr_mul and is scaled by
              lr_mul / sqrt(fan_in) at run time, so Adam's steps on it are lr * lr_mul in effect
              (the mapping network's 0.01)
    gain      sqrt(2), the gain of the leaky ReLU (slope 0.2) that keeps activations at unit scale
    FIR       the [1, 3, 3, 1] binomial filter (outer product, normalised) used around every
              up- and down-sampling (``resample: fir``); ``bilinear`` uses bilinear interpolation
              (up) and 2x2 averaging (down) instead
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GAIN = math.sqrt(2.0)
FIR = (1.0, 3.0, 3.0, 1.0)


def lrelu(x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Leaky ReLU (0.2) of x + bias (per channel), times sqrt(2) (StyleGAN2's fused_lrelu)."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *[1] * (x.dim() - 2))
    return F.leaky_relu(x, 0.2) * GAIN


class EqualLinear(nn.Module):
    """y = x (W * lr_mul / sqrt(in))^T + b * lr_mul, optionally followed by :func:`lrelu`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_features), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activate:
            return lrelu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


def fir_kernel(taps=FIR) -> torch.Tensor:
    """The separable 2-D filter outer(taps, taps), normalised to sum 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[:, None] * k[None, :]
    return k / k.sum()


def blur(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int], gain: float = 1.0) -> torch.Tensor:
    """Depthwise FIR filtering of x with ``kernel`` after zero padding (pad0 before, pad1 after)."""
    c = x.shape[1]
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = (kernel * gain).flip(0, 1).to(x)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=c)


def upsample2x(x: torch.Tensor, resample: str, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """2x up-sampling: zero insertion then the FIR filter times 4 (upfirdn2d, up=2), or bilinear."""
    if resample == "bilinear":
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    b, c, h, w = x.shape
    z = x.new_zeros(b, c, h, 2, w, 2)
    z[:, :, :, 0, :, 0] = x
    taps = kernel.shape[0]
    return blur(z.reshape(b, c, 2 * h, 2 * w), kernel, ((taps + 1) // 2, (taps - 2) // 2), gain=4.0)


class EqualConv2d(nn.Module):
    """k x k convolution with an equalised learning rate; ``down`` halves the resolution
    (FIR blur then a stride-2 convolution, or a convolution then 2x2 averaging), ``activate``
    adds the bias inside :func:`lrelu`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activate: bool = True, down: bool = False, resample: str = "fir"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.k, self.activate, self.down, self.resample = kernel_size, activate, down, resample
        self.register_buffer("kernel", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.scale
        if self.down and self.resample == "fir":
            p = (self.kernel.shape[0] - 2) + (self.k - 1)
            x = F.conv2d(blur(x, self.kernel, ((p + 1) // 2, p // 2)), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.k // 2)
            if self.down:
                x = F.avg_pool2d(x, 2)
        if self.activate:
            return lrelu(x, self.bias)
        return x if self.bias is None else x + self.bias.reshape(1, -1, 1, 1)
