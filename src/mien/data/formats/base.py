"""What every layout reader returns: a :class:`Layout` of :class:`Record` s, one per usable image,
with the factor schema, the splits and the problems met (counted skips, never silent drops).

A record points at its pixels (a file, or an array for FER2013's CSV), holds its factor values
(integer codes for discrete factors, numbers for continuous ones; design.md, Contracts), its split
and, when the data set annotates them, its landmarks (68 iBUG or 5 CelebA points, pixels of the
source image) and face box. :meth:`Record.crop` frames the face at any size: FFHQ alignment from
the annotated landmarks or from detected ones, else the annotated box, else the centre square.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mien.data.align import align_face
from mien.data.factors import Factor
from mien.data.images import read_rgb, resize_square
from mien.errors import DataError

BOX_MARGIN = 1.5  # side of the square crop around an annotated face box, in box sides


@dataclass
class Record:
    name: str
    path: Path | None = None
    pixels: np.ndarray | None = None
    factors: dict = field(default_factory=dict)
    split: str = ""
    landmarks: np.ndarray | None = None
    box: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self.pixels is not None:
            grey = self.pixels if self.pixels.ndim == 3 else np.repeat(self.pixels[..., None], 3, 2)
            return np.ascontiguousarray(grey, dtype=np.uint8)
        return read_rgb(self.path)

    def crop(self, size: int, align: bool = False, finder=None) -> dict | None:
        """``{'image': size x size x 3 uint8, ['landmarks2d' 68 x 2, 'landmarks3d' 68 x 3 in [0, 1]]}``;
        None when ``align`` needs a detected face and none is found."""
        rgb = self.rgb()
        has68 = self.landmarks is not None and len(self.landmarks) == 68
        if align and self.landmarks is not None:
            image, points = align_face(rgb, self.landmarks, size)
            return {"image": image, "landmarks2d": points[:, :2]} if has68 else {"image": image}
        if align:
            from mien.data.photo import crop_face

            return crop_face(rgb, size, True, finder)
        if self.box is not None:
            return _box_crop(rgb, self.box, size, self.landmarks if has68 else None)
        h, w = rgb.shape[:2]
        out = {"image": resize_square(rgb, size)}
        if has68:
            side = min(h, w)
            out["landmarks2d"] = ((self.landmarks[:, :2] - [(w - side) / 2, (h - side) / 2]) / side).astype(np.float32)
        return out


def _box_crop(rgb: np.ndarray, box: np.ndarray, size: int, landmarks) -> dict:
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * BOX_MARGIN
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    square = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    h, w = rgb.shape[:2]
    pad = int(np.ceil(max(0, -square[0], -square[1], square[2] - w, square[3] - h)))
    image = Image.fromarray(np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else rgb)
    shifted = tuple(v + pad for v in square)
    out = {"image": np.asarray(image.resize((size, size), Image.Resampling.BICUBIC, box=shifted))}
    if landmarks is not None:
        out["landmarks2d"] = ((landmarks[:, :2] - square[:2]) / side).astype(np.float32)
    return out


@dataclass
class Layout:
    """The records of one data set folder in a known layout, its factors and what was left out."""

    name: str
    root: Path
    records: list[Record]
    factors: list[Factor]
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, example: str):
        """Count one record left out, and keep its name (``skipped.csv`` lists them all)."""
        self.skipped[reason] += 1
        self.examples.setdefault(reason, []).append(example)

    @property
    def splits(self) -> Counter:
        return Counter(r.split or "(none)" for r in self.records)

    @property
    def landmark_points(self) -> int:
        counts = {0 if r.landmarks is None else len(r.landmarks) for r in self.records}
        return counts.pop() if len(counts) == 1 else 0

    def check(self) -> "Layout":
        if not self.records:
            why = "; ".join(f"{n} {reason}" for reason, n in self.skipped.items()) or "no images"
            raise DataError(f"{self.root} ({self.name} layout) has no usable images ({why}); check the folder")
        return self


def read_table(path: Path, required: tuple[str, ...], delimiter: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV (or whitespace table with ``delimiter=' '``), stripped; a
    :class:`DataError` naming the file when a required column is missing or a row is short."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            if delimiter == " ":
                lines = [line.split() for line in f if line.strip()]
            else:
                lines = [row for row in csv.reader(f) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path} ({e}); fix or replace the file") from None
    if not lines:
        raise DataError(f"{path} is empty; replace it with the data set's original file")
    header = [h.strip() for h in lines[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path} has no column {missing[0]!r} (its columns: {', '.join(header[:8])}); "
                        "use the data set's original file")
    rows = []
    for n, row in enumerate(lines[1:], start=2):
        if len(row) < len(header):
            raise DataError(f"{path} line {n} has {len(row)} fields but the header has {len(header)}; fix that row")
        rows.append([c.strip() for c in row])
    return header, rows
