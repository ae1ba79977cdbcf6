"""FER2013 (Goodfellow et al. 2013, "Challenges in Representation Learning: A report on three
machine learning contests"): ``fer2013.csv`` (or ``icml_face_data.csv``) with the columns
``emotion`` (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral), ``pixels``
(2304 space-separated grey values of a 48 x 48 face) and ``Usage`` (Training, PublicTest,
PrivateTest: splits train, val, test). Rows whose pixels do not make 48 x 48 are skipped and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mien.data.factors import Factor
from mien.data.formats.base import Layout, Record, read_table
from mien.errors import DataError

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NAMES = ("fer2013.csv", "icml_face_data.csv")
SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SIDE = 48


def _table(root: Path) -> Path | None:
    return next((root / n for n in NAMES if (root / n).is_file()), None)


def detect(root: Path) -> bool:
    return _table(root) is not None


def read(root: Path) -> Layout:
    path = _table(root)
    if path is None:
        raise DataError(f"{root} has no {' or '.join(NAMES)}; FER2013 is that one CSV file")
    header, rows = read_table(path, ("emotion", "pixels"))
    layout = Layout("fer2013", root, [], [Factor("expression", "categorical", values=EMOTIONS)])
    if "Usage" not in header:
        layout.notes.append("no Usage column: no splits")
    at = {name: header.index(name) for name in header}
    for line, row in enumerate(rows, start=2):
        try:
            code = int(row[at["emotion"]])
        except ValueError:
            raise DataError(f"{path} line {line}: emotion {row[at['emotion']]!r} is not a code 0..6; fix that row") from None
        if not 0 <= code < len(EMOTIONS):
            raise DataError(f"{path} line {line}: emotion {code} is not a code 0..6; fix that row")
        try:
            pixels = np.array(row[at["pixels"]].split(), dtype=np.float64)
        except ValueError:
            pixels = np.empty(0)
        if pixels.size != SIDE * SIDE or not ((0 <= pixels) & (pixels <= 255)).all():
            layout.skip("rows whose pixels are not 48 x 48 grey values", f"line {line}")
            continue
        split = SPLITS.get(row[at["Usage"]], row[at["Usage"]]) if "Usage" in at else ""
        layout.records.append(Record(f"line{line}", pixels=pixels.reshape(SIDE, SIDE).astype(np.uint8),
                                     factors={"expression": code}, split=split))
    return layout.check()
