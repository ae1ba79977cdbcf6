"""The classifier of noisy inputs p_phi(y | x_t, t) that classifier guidance differentiates
(Dhariwal & Nichol 2021; Pikoulis §3.3, Eq. 3.66), a model family trained by the engine:
cross-entropy on x_t ~ q(x_t | x_0) with t ~ U{0..T-1} (Pikoulis Eq. 3.24 for q)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mien.nn.embeddings import timestep_embedding
from mien.diffusion.schedule import NoiseSchedule
from mien.errors import ConfigError, DataError
from mien.models.base import GenerativeModel, ModelConfig, register


@dataclass
class NoisyClassifierConfig(ModelConfig):
    """``input``: the sample-dict key classified (``image``, or any tensor key); ``in_shape`` its
    shape per item (from the data when left empty); the noise schedule of the diffusion model
    it guides (``schedule``, ``timesteps``); ``hidden`` the feature width."""

    name: str = "noisy_classifier"
    input: str = "image"
    in_shape: list[int] = field(default_factory=list)
    num_classes: int = 2
    hidden: int = 128
    schedule: str = "linear"
    timesteps: int = 1000

    def __post_init__(self):
        if self.num_classes < 2 or self.hidden < 4:
            raise ConfigError("model.num_classes must be >= 2 and model.hidden >= 4")

    @classmethod
    def from_data(cls, section: dict, data) -> "NoisyClassifierConfig":
        section = dict(section)
        if not section.get("in_shape"):
            item = data.batch([0]) if hasattr(data, "batch") else data[0]
            key = section.get("input", "image")
            if key not in item:
                raise DataError(f"the data has no {key!r} for the noisy classifier; set model.input")
            shape = item[key].shape
            section["in_shape"] = list(shape[1:] if hasattr(data, "batch") else shape)
        return super().from_data(section, data)


@register("noisy_classifier", NoisyClassifierConfig)
class NoisyClassifier(GenerativeModel):
    """An MLP (flat inputs) or a small CNN (images) with a sinusoidal timestep embedding added to
    its features; ``forward(x_t, t)`` gives class logits."""

    def __init__(self, config: NoisyClassifierConfig):
        super().__init__(config)
        c, hidden = config, config.hidden
        if not c.in_shape:
            raise ConfigError("model.in_shape is needed (the shape of one input), or train it on data")
        self.schedule = NoiseSchedule.make(c.schedule, c.timesteps)
        if len(c.in_shape) == 1:
            self.features = nn.Sequential(nn.Linear(c.in_shape[0], hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        else:
            ch = c.in_shape[0]
            self.features = nn.Sequential(
                nn.Conv2d(ch, hidden // 4, 3, 2, 1), nn.SiLU(), nn.Conv2d(hidden // 4, hidden // 2, 3, 2, 1), nn.SiLU(),
                nn.Conv2d(hidden // 2, hidden, 3, 2, 1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU())
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, c.num_classes))

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).float().expand(len(x))
        return self.head(self.features(x) + self.time(timestep_embedding(t, self.config.hidden)))

    def loss(self, batch: dict, step: int = 0) -> dict:
        """Cross-entropy of p_phi(y | x_t, t), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        x0, y = batch[self.config.input].float(), torch.as_tensor(batch["label"]).long()
        t = torch.randint(self.schedule.T, (len(x0),), device=x0.device)
        logits = self(self.schedule.q_sample(x0, t, torch.randn_like(x0)), t)
        return {"loss": nn.functional.cross_entropy(logits, y),
                "acc": (logits.argmax(1) == y).float().mean().detach()}
