"""The StyleGAN2 residual discriminator (Karras et al. 2020, Fig. 7b and App. B), with the
minibatch standard deviation layer (Karras et al. 2018, Sec. 3), equalised learning rate, and two
optional heads:

- a projection term for class-conditional GANs (Miyato & Koyama 2018):
  D(x, y) = psi(phi(x)) + <embed(y), phi(x)>, phi the trunk's features (Zou Eq. 2.39's D(x, y));
- InfoGAN's Q head on the shared trunk (Chen et al. 2016; Zou Eqs. 2.34-2.35): logits of each
  categorical code and the mean and log standard deviation of the continuous codes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mien.nn.equalized import EqualConv2d, EqualLinear


def minibatch_stddev(x: torch.Tensor, group: int = 4, features: int = 1) -> torch.Tensor:
    """Append the standard deviation over groups of ``group`` samples, averaged over channels and
    pixels (``features`` values per group), as extra feature maps."""
    n, c, h, w = x.shape
    g = min(group, n)
    while n % g:  # the largest group size <= group that divides the batch
        g -= 1
    y = x.reshape(g, -1, features, c // features, h, w)
    y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt().mean((2, 3, 4))  # (n / g) x features
    y = y.reshape(-1, features, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], 1)


class ResidualBlock(nn.Module):
    """conv 3x3, conv 3x3 with down-sampling, plus a 1x1 down-sampled skip; the sum / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, resample: str = "fir"):
        super().__init__()
        self.conv1 = EqualConv2d(in_channels, in_channels, 3)
        self.conv2 = EqualConv2d(in_channels, out_channels, 3, down=True, resample=resample)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, activate=False, down=True, resample=resample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """D: image -> logit. ``channels`` lists the feature maps at resolutions image_size, ..., 4."""

    def __init__(self, image_size: int, channels: list[int], in_channels: int = 3, resample: str = "fir",
                 mbstd_group: int = 4, num_classes: int = 0, info_categorical: list[int] | None = None,
                 info_continuous: int = 0):
        super().__init__()
        self.from_rgb = EqualConv2d(in_channels, channels[0], 1)
        self.blocks = nn.Sequential(*[ResidualBlock(a, b, resample) for a, b in zip(channels, channels[1:])])
        c = channels[-1]
        self.final_conv = EqualConv2d(c + 1, c, 3)
        self.final_linear = EqualLinear(c * 16, c, activate=True)
        self.out = EqualLinear(c, 1)
        self.mbstd_group = mbstd_group
        self.project = nn.Embedding(num_classes, c) if num_classes else None
        self.info_categorical, self.info_continuous = list(info_categorical or []), info_continuous
        q_out = sum(self.info_categorical) + 2 * info_continuous
        self.q_head = nn.Sequential(EqualLinear(c, c, activate=True), EqualLinear(c, q_out)) if q_out else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): the trunk's c-dimensional features before the output layer."""
        x = self.blocks(self.from_rgb(x))
        x = self.final_conv(minibatch_stddev(x, self.mbstd_group))
        return self.final_linear(x.flatten(1))

    def score(self, h: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The logit of features h (n), with the projection term for labels."""
        logit = self.out(h).squeeze(1)
        if self.project is not None:
            if labels is None:
                raise ValueError("a projection discriminator needs labels")
            logit = logit + (self.project(labels.long()) * h).sum(1) / math.sqrt(h.shape[1])
        return logit

    def q(self, h: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """InfoGAN's Q(c | x) from features h: (logits per categorical code, mean, log std)."""
        out = self.q_head(h)
        logits = list(out[:, :sum(self.info_categorical)].split(self.info_categorical, 1))
        mean, log_std = out[:, sum(self.info_categorical):].chunk(2, 1)
        return logits, mean, log_std.clamp(-5, 2)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(self.features(x), labels)
