"""Baselines of Zou thesis Tabs. 3.1 and 3.3: an ACTOR-style conditional transformer VAE
(Petrovich et al. 2021) for label control, and mean imputation for expression filling (digest A.5:
missing frames take the mean of the known frames)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mien.data.world.sequences import DIRECTIONS, SEQUENCE_CLASSES
from mien.models.base import ModelConfig, register
from mien.models.expr4d.base import SequenceModel
from mien.nn.embeddings import position_embedding


@dataclass
class ActorConfig(ModelConfig):
    name: str = "actor"
    landmarks: int = 68
    d_model: int = 256
    layers: int = 8
    heads: int = 4
    ff: int = 1024
    dropout: float = 0.1
    kl_weight: float = 1e-5  # ACTOR's lambda_KL
    class_names: list[str] = field(default_factory=lambda: list(SEQUENCE_CLASSES))
    directions: list[str] = field(default_factory=lambda: list(DIRECTIONS))


@register("actor", ActorConfig)
class Actor(SequenceModel):
    """Encoder: per-class learnable mu and sigma tokens before the embedded frames, plus a
    sinusoidal position; their outputs are mu and log sigma^2. Decoder: z shifted by a per-class
    bias is the memory of a transformer decoder whose queries are the positions 1..F. Loss:
    ||x - x^||^2 + lambda_KL KL(q(z | x, y) || N(0, I))."""

    def __init__(self, config: ActorConfig):
        super().__init__(config)
        c = config
        d, n = 3 * c.landmarks, len(c.class_names)
        self.embed = nn.Linear(d, c.d_model)
        self.mu_token = nn.Parameter(torch.randn(n, c.d_model) * 0.02)
        self.sigma_token = nn.Parameter(torch.randn(n, c.d_model) * 0.02)
        self.class_bias = nn.Parameter(torch.zeros(n, c.d_model))
        enc = nn.TransformerEncoderLayer(c.d_model, c.heads, c.ff, c.dropout, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(enc, c.layers, enable_nested_tensor=False)
        dec = nn.TransformerDecoderLayer(c.d_model, c.heads, c.ff, c.dropout, activation="gelu", batch_first=True)
        self.decoder = nn.TransformerDecoder(dec, c.layers)
        self.out = nn.Linear(c.d_model, d)

    def _positions(self, frames: int, device) -> torch.Tensor:
        return position_embedding(frames, self.config.d_model, device)

    def encode(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor):
        h = self.embed(x) + self._positions(x.shape[1], x.device)[None]
        h = torch.cat([self.mu_token[y][:, None], self.sigma_token[y][:, None], h], 1)
        h = self.encoder(h, src_key_padding_mask=~F.pad(mask, (2, 0), value=True))
        return h[:, 0], h[:, 1]

    def decode(self, z: torch.Tensor, y: torch.Tensor, frames: int, mask: torch.Tensor | None = None):
        queries = self._positions(frames, z.device)[None].expand(len(z), -1, -1)
        memory = (z + self.class_bias[y])[:, None]
        pad = None if mask is None else ~mask
        return self.out(self.decoder(queries, memory, tgt_key_padding_mask=pad))

    def loss(self, batch: dict, step: int = 0) -> dict:
        seq, mask = self.observe(batch)
        x = self.normalise(seq)
        y = torch.as_tensor(batch["label"], device=x.device).long()
        mu, logvar = self.encode(x, y, mask)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        w = mask[..., None].float().expand_as(x)
        recon = ((self.decode(z, y, x.shape[1], mask) - x).pow(2) * w).sum() / w.sum()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        return {"loss": recon + self.config.kl_weight * kl, "recon": recon, "kl": kl}

    @torch.no_grad()
    def sample(self, n: int, cond=None, generator=None, frames: int = 40) -> dict:
        """A sample dict: ``sequence``, n sequences of class ``cond`` (a name or index; None: a
        class drawn uniformly for each) with z ~ N(0, I) through the decoder, and their ``label``."""
        self.check_frames(frames)
        if cond is None:
            y = torch.randint(len(self.config.class_names), (n,), generator=generator)
        else:
            y = torch.full((n,), self.label_index(cond))
        y = y.to(self.coord_mean.device)
        z = torch.randn((n, self.config.d_model), generator=generator).to(y.device)
        return {"sequence": self.denormalise(self.decode(z, y, frames)), "label": y}


def mean_imputation(known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sequences (B x F x N x 3) whose unknown frames (mask False; mask F or B x F) are the mean of
    the known frames of the same sequence."""
    m = torch.as_tensor(mask, dtype=torch.bool).expand(known.shape[:2]).to(known.device)
    w = m[..., None, None].to(known.dtype)
    mean = (known * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)
    return torch.where(w.bool(), known, mean)
