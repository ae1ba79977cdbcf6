"""Denoisers: diffusers' U-Nets presented as mien denoisers ``net(x_t, t, cond) -> output``.

``unet2d`` wraps ``UNet2DModel`` with class-label conditioning (a learned embedding added to the
timestep embedding); ``unet2d_condition`` wraps ``UNet2DConditionModel`` with cross-attention to
one context token from a label embedding (Pikoulis §4.3.3: tau_theta(y) = Embedding(9, 512)).
In both, label index ``num_classes`` is the learned null condition of classifier-free guidance.
Sizes come from presets (tiny / small / paper) that the config may override.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mien.errors import ConfigError

PRESETS = {
    "tiny": {"channels": [32, 64], "layers_per_block": 1, "attention": [False, True], "head_dim": 8},
    "small": {"channels": [64, 128, 128], "layers_per_block": 2, "attention": [False, True, True], "head_dim": 32},
    "paper": {"channels": [160, 320, 640], "layers_per_block": 2, "attention": [True, True, True], "head_dim": 32},
}


@dataclass
class DenoiserConfig:
    kind: str = "unet2d"
    preset: str = "tiny"
    channels: list[int] = field(default_factory=list)
    layers_per_block: int = 0
    attention: list[bool] = field(default_factory=list)
    head_dim: int = 0
    cross_attention_dim: int = 128
    norm_groups: int = 8

    def resolved(self) -> "DenoiserConfig":
        if self.kind not in ("unet2d", "unet2d_condition"):
            raise ConfigError(f"unknown denoiser kind {self.kind!r}; choose unet2d or unet2d_condition")
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown denoiser preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        p = PRESETS[self.preset]
        out = DenoiserConfig(self.kind, self.preset, self.channels or p["channels"],
                             self.layers_per_block or p["layers_per_block"], self.attention or p["attention"],
                             self.head_dim or p["head_dim"], self.cross_attention_dim, self.norm_groups)
        if len(out.attention) != len(out.channels):
            raise ConfigError("denoiser.attention needs one flag per entry of denoiser.channels")
        return out


class UNetDenoiser(nn.Module):
    """A diffusers U-Net behind mien's denoiser interface."""

    def __init__(self, cfg: DenoiserConfig, sample_size: int, channels: int, num_classes: int = 0):
        super().__init__()
        from diffusers import UNet2DConditionModel, UNet2DModel

        c = cfg.resolved()
        self.kind, self.num_classes = c.kind, num_classes
        common = dict(sample_size=sample_size, in_channels=channels, out_channels=channels,
                      block_out_channels=tuple(c.channels), layers_per_block=c.layers_per_block,
                      norm_num_groups=c.norm_groups)
        if c.kind == "unet2d":
            down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in c.attention)
            up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(c.attention))
            self.unet = UNet2DModel(**common, down_block_types=down, up_block_types=up, attention_head_dim=c.head_dim,
                                    num_class_embeds=num_classes + 1 if num_classes else None)
        else:
            down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in c.attention)
            up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(c.attention))
            self.unet = UNet2DConditionModel(**common, down_block_types=down, up_block_types=up,
                                             cross_attention_dim=c.cross_attention_dim, attention_head_dim=c.head_dim)
            self.context = nn.Embedding(max(num_classes, 0) + 1, c.cross_attention_dim)

    @property
    def mid_block(self) -> nn.Module:
        return self.unet.mid_block

    def null(self, n: int, device=None) -> torch.Tensor:
        """The null condition (label ``num_classes``) for a batch of n."""
        return torch.full((n,), self.num_classes, dtype=torch.long, device=device)

    def forward(self, x: torch.Tensor, t, cond: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(len(x)) if t.dim() == 0 else t
        if self.num_classes and cond is None:
            cond = self.null(len(x), x.device)
        if self.kind == "unet2d":
            return self.unet(x, t, class_labels=cond if self.num_classes else None).sample
        labels = cond if cond is not None else self.null(len(x), x.device)
        return self.unet(x, t, encoder_hidden_states=self.context(labels)[:, None]).sample
