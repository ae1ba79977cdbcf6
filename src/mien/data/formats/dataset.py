"""A :class:`~mien.data.formats.base.Layout` as a torch data set of sample dicts (design.md,
Contracts): ``image`` framed by :meth:`Record.crop` (annotated face box, else centre square),
``factors``, ``attributes`` (binary factors), ``label`` (the expression, else the class) and
``landmarks2d`` where the data set annotates 68 points. ``split`` keeps one official split."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mien.data.formats.base import Layout
from mien.errors import ConfigError

LABEL_FACTORS = ("expression", "class")


class LayoutDataset(Dataset):
    def __init__(self, layout: Layout, size: int = 64, split: str | None = None):
        if not isinstance(size, int) or size < 8:
            raise ConfigError(f"size must be an integer of at least 8, got {size!r}")
        self.layout, self.size, self.factors = layout, size, list(layout.factors)
        self.records = [r for r in layout.records if split is None or r.split == split]
        if split is not None and not self.records:
            have = ", ".join(sorted(layout.splits)) or "none"
            raise ConfigError(f"{layout.root} has no split {split!r}; its splits: {have}")
        names = [f.name for f in self.factors]
        self.binary = [f.name for f in self.factors if f.kind == "binary"]
        self.label_factor = next((n for n in LABEL_FACTORS if n in names), None)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        framed = record.crop(self.size)
        pixels = framed["image"].astype(np.float32) / 127.5 - 1
        sample = {"image": torch.from_numpy(pixels).permute(2, 0, 1).contiguous()}
        if self.factors:
            sample["factors"] = dict(record.factors)
        if self.binary:
            sample["attributes"] = torch.tensor([record.factors[n] for n in self.binary], dtype=torch.float32)
        if self.label_factor is not None:
            sample["label"] = int(record.factors[self.label_factor])
        if "landmarks2d" in framed:
            sample["landmarks2d"] = torch.from_numpy(framed["landmarks2d"])
        return sample
