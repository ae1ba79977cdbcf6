"""mien's own image-folder layouts (a mien export with ``metadata.csv``, class sub-folders, or a
plain folder of images; :mod:`mien.data.folder`) as a :class:`Layout`: factors and landmarks as
:class:`~mien.data.folder.FolderDataset` reads them, the split from a ``split`` column if any."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from mien.data.folder import FolderDataset
from mien.data.formats.base import Layout, Record


def detect(root: Path) -> bool:
    return True  # the fallback: any folder with images


def _splits(root: Path) -> dict[str, str]:
    path = root / "metadata.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    return {r["file_name"]: r["split"] for r in rows if r.get("split")} if rows and "split" in rows[0] else {}


def read(root: Path) -> Layout:
    ds = FolderDataset(root)
    splits = _splits(root)
    layout = Layout("folder", root, [], list(ds.factors))
    for i, path in enumerate(ds.files):
        values, landmarks = ds.annotation(i)
        rel = path.relative_to(root).as_posix()
        if landmarks is not None:
            try:
                with Image.open(path) as im:
                    landmarks = (landmarks * np.array(im.size, dtype=np.float32)).astype(np.float32)
            except Exception:  # an unreadable image is counted when it is cropped
                landmarks = None
        layout.records.append(Record(rel, path=path, factors=values, split=splits.get(rel, ""), landmarks=landmarks))
    return layout.check()
