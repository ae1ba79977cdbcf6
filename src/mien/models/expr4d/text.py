"""mien's own small text encoder, standing in for CLIP in text control (Zou thesis §3.4.2, Eq. 3.10;
digest A.4): word tokens of a closed vocabulary (the world's sequence descriptions), a
transformer encoder and a masked mean, trained contrastively with the text head (no pretrained
network can be downloaded, design.md Conventions)."""

from __future__ import annotations

import re

import torch
from torch import nn

from mien.nn.embeddings import position_embedding
from mien.errors import ConfigError

PAD = "<pad>"


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def world_vocabulary() -> list[str]:
    """The words of every description of the world's sequences (``describe``), padding first."""
    from mien.data.world.sequences import DIRECTIONS, SEQUENCE_CLASSES, describe

    found = {w for c in range(len(SEQUENCE_CLASSES)) for d in range(len(DIRECTIONS)) for w in words(describe(c, d))}
    return [PAD, *sorted(found)]


class TextEncoder(nn.Module):
    """Texts -> unit vectors (B x dim)."""

    def __init__(self, vocab: list[str], width: int, layers: int, dim: int, heads: int = 4):
        super().__init__()
        self.vocab = {w: i for i, w in enumerate(vocab)}
        self.width = width
        self.embed = nn.Embedding(len(vocab), width, padding_idx=0)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, 0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(width, dim)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids (B x L, 0-padded); an unknown word is a user error that lists the vocabulary."""
        ids = []
        for text in texts:
            toks = words(text)
            unknown = [w for w in toks if w not in self.vocab]
            if unknown or not toks:
                known = ", ".join(w for w in self.vocab if w != PAD)
                raise ConfigError(f"the text encoder does not know {unknown[0] if unknown else 'an empty text'!r} "
                                  f"in {text!r}; write the prompt with these words: {known}")
            ids.append([self.vocab[w] for w in toks])
        length = max(len(i) for i in ids)
        return torch.tensor([i + [0] * (length - len(i)) for i in ids], device=self.embed.weight.device)

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenize(texts)
        keep = ids != 0
        position = position_embedding(ids.shape[1], self.width, ids.device)
        h = self.encoder(self.embed(ids) + position[None], src_key_padding_mask=~keep)
        pooled = (h * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
        return nn.functional.normalize(self.out(pooled), dim=-1)
