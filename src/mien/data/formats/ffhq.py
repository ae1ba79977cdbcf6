"""FFHQ (Karras et al. 2019; NVlabs/ffhq-dataset): a folder of images at any of the released
resolutions (``images1024x1024/00000/00000.png``, ``thumbnails128x128/...``, or the images alone),
optionally with ``ffhq-dataset-v2.json``, whose entries give each image's category (training or
validation: the split) and 68 dlib landmarks for the in-the-wild, 1024 and 128 forms. FFHQ has no
labels, so no factors. Detected by the JSON, or by folders named like ``images1024x1024``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mien.data.formats.base import Layout, Record
from mien.errors import DataError

JSON_NAME = "ffhq-dataset-v2.json"
FOLDER = re.compile(r"^(images|thumbnails)\d+x\d+$|^in-the-wild-images$")
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
SPLITS = {"training": "train", "validation": "val"}


def detect(root: Path) -> bool:
    return (root / JSON_NAME).is_file() or any(p.is_dir() and FOLDER.match(p.name) for p in root.iterdir())


def _annotations(path: Path) -> dict[str, tuple[str, np.ndarray | None]]:
    """Relative image path -> (split, 68 x 2 landmarks or None) for every form of every entry."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read {path} ({e}); use the data set's original {JSON_NAME}") from None
    if not isinstance(entries, dict):
        raise DataError(f"{path} must map entry numbers to entries, as the original {JSON_NAME} does")
    out = {}
    for key, entry in entries.items():
        split = SPLITS.get(entry.get("category", ""), entry.get("category", "")) if isinstance(entry, dict) else ""
        for form in ("image", "thumbnail", "in_the_wild"):
            info = entry.get(form) if isinstance(entry, dict) else None
            if isinstance(info, dict) and "file_path" in info:
                marks = info.get("face_landmarks")
                array = np.asarray(marks, dtype=np.float32) if marks is not None else None
                if array is not None and array.shape != (68, 2):
                    raise DataError(f"{path} entry {key} {form}: face_landmarks must be 68 x 2, got {array.shape}")
                out[Path(info["file_path"]).as_posix()] = (split, array)
    return out


def read(root: Path) -> Layout:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    layout = Layout("ffhq", root, [], [])
    notes = _annotations(root / JSON_NAME) if (root / JSON_NAME).is_file() else None
    if notes is None:
        layout.notes.append(f"no {JSON_NAME}: no splits and no landmarks")
    for p in files:
        rel = p.relative_to(root).as_posix()
        split, marks = notes.get(rel, ("", None)) if notes is not None else ("", None)
        if notes is not None and rel not in notes:
            layout.skip(f"images not in {JSON_NAME}", rel)
            continue
        layout.records.append(Record(rel, path=p, split=split, landmarks=marks))
    return layout.check()
