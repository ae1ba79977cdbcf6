"""The independent landmark-sequence classifier (IC) of Zou thesis §3.6: one LSTM layer followed
by a linear layer (as in Motion3DGAN), trained on world sequences. Its accuracy on generated
sequences scores conditional generation, and the Fréchet distance on the output of its linear
layer is the thesis's sequence FID (Zou §3.6, Eq. 2.38)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from mien.errors import ConfigError
from mien.models.base import GenerativeModel, ModelConfig, register


@dataclass
class SequenceClassifierConfig(ModelConfig):
    name: str = "sequence_classifier"
    n_landmarks: int = 68
    hidden: int = 128
    n_classes: int = 11


@register("sequence_classifier", SequenceClassifierConfig)
class SequenceClassifier(GenerativeModel):
    """Sequences B x F x N x 3 (model units; ``lengths`` B for padded batches) -> class logits.
    Coordinates are standardised with the per-coordinate statistics of the training data
    (:meth:`fit_data`, on the first training batch); trained by the engine on cross-entropy."""

    def __init__(self, config: SequenceClassifierConfig | None = None):
        super().__init__(config or SequenceClassifierConfig())
        c = self.config
        d = c.n_landmarks * 3
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        self.lstm = nn.LSTM(d, c.hidden, num_layers=1, batch_first=True)
        self.linear = nn.Linear(c.hidden, c.n_classes)

    def forward(self, sequence: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (B x classes): the linear layer applied to the LSTM state at each
        sequence's last real frame. These logits are also the features of the sequence FID."""
        n = self.config.n_landmarks
        if sequence.dim() != 4 or sequence.shape[2:] != (n, 3):
            raise ConfigError(f"sequences must be B x F x {n} x 3, got {tuple(sequence.shape)}")
        x = (sequence.flatten(2).float() - self.mean) / self.std
        if lengths is None:
            lengths = torch.full((len(x),), x.shape[1], dtype=torch.long)
        packed = pack_padded_sequence(x, torch.as_tensor(lengths).cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.linear(h[-1])

    @torch.no_grad()
    def fit_data(self, batch: dict) -> dict:
        """Mean and std per coordinate over the real frames of ``batch``."""
        seq, lengths = batch["sequence"], batch["length"]
        real = torch.arange(seq.shape[1])[None] < torch.as_tensor(lengths)[:, None]
        frames = seq.flatten(2)[real].float()
        self.mean.copy_(frames.mean(0))
        self.std.copy_(frames.std(0).clamp_min(1e-3))
        return {"frames": int(real.sum())}

    def loss(self, batch: dict, step: int = 0) -> dict:
        logits = self(batch["sequence"], batch["length"])
        label = torch.as_tensor(batch["label"]).long()
        return {"loss": F.cross_entropy(logits, label), "acc": (logits.argmax(1) == label).float().mean().detach()}
