"""Torch data sets of world faces, generated on the fly and deterministic per index.

Items follow the sample-dict contract of design.md: ``image`` (3 x S x S in [-1, 1]),
``landmarks2d`` (68 x 2 in [0, 1]), ``landmarks3d`` (68 x 3, posed, x/y as landmarks2d and z
towards the camera), ``label`` (the expression), ``attributes`` (the binary factors) and
``factors``. ``__getitems__`` renders a whole batch in one vectorised call, so a DataLoader with
a batch size gets batched rendering for free. With ``cache=True`` the faces are rendered once into
a memory-mapped uint8 cache (:mod:`mien.data.world.cache`) and read from it, quantised as an export
quantises them (departure: images then differ from on-the-fly renders by the rounding, < 1/255).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mien.data.factors import Factor
from mien.data.world.factors import Design, make_design
from mien.data.world.labels import DERIVED_LABELS, derive_label
from mien.data.world.render import render
from mien.errors import ConfigError


def check_size(size: int) -> int:
    if not isinstance(size, int) or not 32 <= size <= 256:
        raise ConfigError(f"image size {size!r} is not supported; choose an integer from 32 to 256")
    return size


class WorldDataset(Dataset):
    """``n`` world faces of ``size`` pixels drawn by ``design`` ('iid', 'factorial', 'correlated' or
    a :class:`Design`; keyword arguments go to the design) from ``seed``. ``n`` defaults to the
    number of cells of a finite design. ``labels`` names labels derived from the drawn factors
    (:mod:`mien.data.world.labels`, e.g. ``smile``) to add to ``factors`` and the schema; the
    images and the other keys do not change. ``cache`` reads the faces from the render cache
    (opened and, if missing, built on first use, with a progress bar when ``progress``)."""

    def __init__(self, n: int | None = None, size: int = 64, seed: int = 0, design: str | Design = "iid",
                 labels=(), cache: bool = False, progress: bool = True, **design_kwargs):
        self.design = make_design(design, **design_kwargs)
        cells = self.design.size
        if n is None:
            if cells is None:
                raise ConfigError("give the number of faces n for an unbounded design")
            n = cells
        if n < 1 or (cells is not None and n > cells):
            raise ConfigError(f"n={n} is not possible here; use 1..{cells or 'any'}")
        self.n, self.size, self.seed = int(n), check_size(size), int(seed)
        self.factors: list[Factor] = self.design.factors()
        self.binary = [f.name for f in self.factors if f.kind == "binary"]  # ``attributes``: drawn factors only
        drawn = {f.name for f in self.factors}
        unknown = [n for n in labels if n not in drawn and n not in DERIVED_LABELS]
        if unknown:
            raise ConfigError(f"unknown label {unknown[0]!r}; the world labels its factors "
                              f"({', '.join(f.name for f in self.factors if f.discrete)}) and {', '.join(DERIVED_LABELS)}")
        self.derived = [n for n in dict.fromkeys(labels) if n not in drawn]
        self.factors += [DERIVED_LABELS[n] for n in self.derived]
        self._cached, self._progress, self._cache = bool(cache), progress, None

    @property
    def cache(self):
        """The render cache, opened (and built if missing) on first use, so that a run's config
        checks fail before any rendering; None when the faces are rendered on the fly."""
        if self._cached and self._cache is None:
            from mien.data.world.cache import RenderCache

            self._cache = RenderCache.open(self.draw, lambda idx: render(self.draw(idx), self.size),
                                           self.n, self.size, self._progress)
        return self._cache

    def __len__(self) -> int:
        return self.n

    def draw(self, indices) -> dict[str, torch.Tensor]:
        """Factor values of the given items."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"index out of range for a data set of {self.n} faces")
        return self.design.draw(self.seed, idx.numpy())

    def batch(self, indices) -> dict:
        """The collated batch of the given items (what a DataLoader would yield)."""
        f = self.draw(indices)
        cache = self.cache
        if cache is None:
            image, lm2, lm3 = render(f, self.size)
        else:
            image, lm2, lm3 = cache.read(np.asarray(indices, dtype=np.int64).reshape(-1))
        f.update({n: derive_label(n, f) for n in self.derived})
        return {
            "image": image, "landmarks2d": lm2, "landmarks3d": lm3, "label": f["expression"].long(),
            "attributes": torch.stack([f[n].float() for n in self.binary], 1),
            "factors": {k: (v.float() if v.is_floating_point() else v.long()) for k, v in f.items()},
        }

    def __getitems__(self, indices) -> list[dict]:
        b = self.batch(indices)
        cols = {k: ({n: t.unbind() for n, t in v.items()} if isinstance(v, dict) else v.unbind()) for k, v in b.items()}
        return [{k: ({n: t[i] for n, t in v.items()} if isinstance(v, dict) else v[i]) for k, v in cols.items()}
                for i in range(len(b["image"]))]

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])[0]

    def samples(self, batch_size: int = 256):
        """Iterate over all items in order, rendering ``batch_size`` faces at a time."""
        for start in range(0, self.n, batch_size):
            yield from self.__getitems__(range(start, min(start + batch_size, self.n)))
