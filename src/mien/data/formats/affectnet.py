"""AffectNet (Mollahosseini et al. 2017, "AffectNet: A Database for Facial Expression, Valence,
and Arousal Computing in the Wild"), manually annotated part: ``Manually_Annotated_Images/`` and
``training.csv`` / ``validation.csv`` (split train / val) with the columns
``subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression,
valence, arousal``. ``facial_landmarks`` is ``x0;y0;x1;y1;...`` (68 points, pixels). Expression
codes 0-7 are the factor ``expression``; 8-10 (none, uncertain, no face) are skipped and counted,
as are rows whose image is missing. Valence and arousal are continuous factors on [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mien.data.factors import Factor
from mien.data.formats.base import Layout, Record, read_table
from mien.errors import DataError

EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
NOT_EXPRESSIONS = {8: "none", 9: "uncertain", 10: "no face"}
IMAGE_DIR = "Manually_Annotated_Images"
TABLES = {"training.csv": "train", "validation.csv": "val"}
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
           "expression", "valence", "arousal")
FACTORS = [Factor("expression", "categorical", values=EXPRESSIONS),
           Factor("valence", "continuous", range=(-1.0, 1.0)),
           Factor("arousal", "continuous", range=(-1.0, 1.0))]


def detect(root: Path) -> bool:
    return (root / IMAGE_DIR).is_dir() and any((root / t).is_file() for t in TABLES)


def _row(path: Path, header: list[str], row: list[str], line: int) -> tuple[int, float, float, np.ndarray, np.ndarray]:
    cell = dict(zip(header, row))
    try:
        code = int(float(cell["expression"]))
        valence, arousal = float(cell["valence"]), float(cell["arousal"])
        x, y, w, h = (float(cell[k]) for k in ("face_x", "face_y", "face_width", "face_height"))
        points = np.array([float(v) for v in cell["facial_landmarks"].split(";") if v.strip()], dtype=np.float32)
    except ValueError as e:
        raise DataError(f"{path} line {line}: {e}; fix that row or use the data set's original file") from None
    if points.size != 136:
        raise DataError(f"{path} line {line}: facial_landmarks has {points.size} numbers, 136 (68 x, y) expected")
    return code, valence, arousal, np.array([x, y, x + w, y + h], dtype=np.float32), points.reshape(68, 2)


def read(root: Path) -> Layout:
    layout = Layout("affectnet", root, [], list(FACTORS))
    images = root / IMAGE_DIR
    for table, split in TABLES.items():
        path = root / table
        if not path.is_file():
            layout.notes.append(f"no {table}: no {split} split")
            continue
        header, rows = read_table(path, COLUMNS)
        for line, row in enumerate(rows, start=2):
            rel = row[header.index("subDirectory_filePath")]
            code, valence, arousal, box, points = _row(path, header, row, line)
            if code in NOT_EXPRESSIONS:
                layout.skip(f"expression {code} ({NOT_EXPRESSIONS[code]})", rel)
                continue
            if not 0 <= code < len(EXPRESSIONS):
                raise DataError(f"{path} line {line}: expression {code} is not a code 0..10; fix that row")
            if not (images / rel).is_file():
                layout.skip("rows without an image", rel)
                continue
            factors = {"expression": code, "valence": float(np.clip(valence, -1, 1)),
                       "arousal": float(np.clip(arousal, -1, 1))}
            layout.records.append(Record(rel, path=images / rel, factors=factors, split=split,
                                         landmarks=points, box=box))
    return layout.check()
