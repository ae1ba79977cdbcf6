"""Semi-supervision: which training faces show their labels (Zou thesis §5.4 and §6.4: a
supervision rate of 0.2, labels hidden for 80 % of the training faces).

:func:`supervision_mask` marks exactly round(rate * n) of n faces as supervised, chosen by a
seeded permutation, so the mask is a pure function of (n, rate, seed); :class:`Supervised` wraps
any data set of sample dicts and adds ``supervised`` (bool) to its items and batches. The labels
stay in ``factors`` (the world knows them exactly, and the swap metrics score against them); a
model reads a label only where ``supervised`` is true.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from mien.errors import ConfigError

THESIS_SUPERVISION = 0.2


def check_rate(rate: float) -> float:
    """``rate`` as a float in [0, 1], else a ConfigError naming the field."""
    try:
        r = float(rate)
    except (TypeError, ValueError):
        r = math.nan
    if not 0.0 <= r <= 1.0:
        raise ConfigError(f"data.supervision must lie in [0, 1] (the share of faces whose labels are shown), got {rate!r}")
    return r


def supervision_mask(n: int, rate: float, seed: int) -> torch.Tensor:
    """Bool mask of n faces, exactly round(rate * n) of them true, picked by a permutation of
    0..n-1 drawn from ``seed`` (face i is supervised when its rank is below the count)."""
    rate = check_rate(rate)
    rank = torch.empty(n, dtype=torch.long)
    rank[torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) * 7_919 + 17))] = torch.arange(n)
    return rank < round(rate * n)


class Supervised(Dataset):
    """A view of ``dataset`` whose items and batches carry ``supervised``: true for the faces whose
    labels a semi-supervised model may read (:func:`supervision_mask`). Other attributes
    (``factors``, ``size``, ``batch``'s keys) are the wrapped data set's."""

    def __init__(self, dataset, rate: float = THESIS_SUPERVISION, seed: int = 0):
        self.dataset, self.rate, self.seed = dataset, check_rate(rate), int(seed)
        self.mask = supervision_mask(len(dataset), self.rate, self.seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):
        if name in ("dataset", "mask", "rate", "seed"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, i: int) -> dict:
        return {**self.dataset[i], "supervised": self.mask[int(i)]}

    def __getitems__(self, indices) -> list[dict]:
        return [{**item, "supervised": self.mask[int(i)]} for i, item in zip(indices, self.dataset.__getitems__(indices))]

    def batch(self, indices) -> dict:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return {**self.dataset.batch(indices), "supervised": self.mask[idx]}
