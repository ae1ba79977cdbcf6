"""The evaluator CNN: one small convolutional trunk read by every metric that the field computes
with a pretrained network (design.md, Conventions: ``fid_mien``, ``lpips_mien``, ``csim_mien``).

Heads (all from one 256-d neck): expression class, intensity, the binary attributes in world
schema order (sex, glasses, beard, hat), pose (yaw, pitch, roll, scaled to [-1, 1]), 68
landmarks (in [0, 1] image coordinates) and a unit-norm identity embedding trained with an
additive angular margin (ArcFace). ``taps`` gives the per-stage activations for the LPIPS
formula, ``features`` the neck vector for FID/KID/precision-recall (the role of Inception's pool
features, Pikoulis digest §4.1; Zou Eq. 2.38).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from mien.errors import ConfigError

ATTRIBUTES = ("sex", "glasses", "beard", "hat")
POSE = ("yaw", "pitch", "roll")
POSE_SCALE = (35.0, 15.0, 12.0)  # degrees mapped to 1 (the world's pose ranges)


@dataclass
class EvaluatorConfig:
    """Architecture of an evaluator: input ``size`` (32..256, a power of two), stage widths
    (stages at 32, 16, 8 and 4 px), the neck width and the identity embedding width."""

    size: int = 64
    widths: list[int] = field(default_factory=lambda: [24, 48, 96, 160])
    neck: int = 256
    embed_dim: int = 64
    n_expressions: int = 8


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Evaluator(nn.Module):
    """Images B x 3 x S x S in [-1, 1] -> dict of head outputs (see :meth:`forward`)."""

    def __init__(self, config: EvaluatorConfig | None = None):
        super().__init__()
        self.config = c = config or EvaluatorConfig()
        if c.size < 32 or c.size > 256 or c.size & (c.size - 1):
            raise ConfigError(f"evaluator size {c.size} is not supported; use 32, 64, 128 or 256")
        if len(c.widths) != 4:
            raise ConfigError("an evaluator has four stages; give four widths")
        w = c.widths
        stem = [_conv(3, w[0], 2) for _ in range(int(math.log2(c.size // 32)))]
        stem += [_conv(w[0] if stem else 3, w[0])]  # every size reaches the 32-px stage 0
        self.stages = nn.ModuleList([nn.Sequential(*stem)] + [
            nn.Sequential(_conv(w[i - 1], w[i], 2), _conv(w[i], w[i])) for i in range(1, 4)])
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(w[3] * 16, c.neck), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({
            "expression": nn.Linear(c.neck, c.n_expressions), "intensity": nn.Linear(c.neck, 1),
            "attributes": nn.Linear(c.neck, len(ATTRIBUTES)), "pose": nn.Linear(c.neck, len(POSE)),
            "landmarks": nn.Linear(c.neck, 68 * 2), "identity": nn.Linear(c.neck, c.embed_dim)})

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.size
        if x.dim() != 4 or x.shape[1] != 3:
            raise ConfigError(f"the evaluator takes B x 3 x H x W images, got {tuple(x.shape)}")
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return x

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each of the four stages (32, 16, 8, 4 px), for ``lpips_mien``."""
        out, h = [], self._check(x)
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The neck vector (B x 256): the feature space of fid_mien, kid_mien and precision/recall."""
        return self.neck(self.taps(x)[-1])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs: ``expression`` logits, ``intensity`` (B), ``attributes`` logits (B x 4),
        ``pose`` (B x 3, scaled), ``landmarks`` (B x 68 x 2), ``identity`` (B x D, unit norm),
        ``features`` (the neck)."""
        h = self.features(x)
        out = {k: head(h) for k, head in self.heads.items()}
        out["intensity"] = out["intensity"][:, 0]
        out["landmarks"] = out["landmarks"].view(-1, 68, 2)
        out["identity"] = F.normalize(out["identity"], dim=1)
        out["features"] = h
        return out

    def pose_degrees(self, pose: torch.Tensor) -> torch.Tensor:
        """Scaled pose outputs -> (yaw, pitch, roll) in degrees."""
        return pose * pose.new_tensor(POSE_SCALE)
