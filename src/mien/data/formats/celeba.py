"""CelebA (Liu et al. 2015, "Deep Learning Face Attributes in the Wild"), aligned-and-cropped form:
``img_align_celeba/`` (also nested twice, as unpacked from Kaggle), ``list_attr_celeba.txt``
(line 1 the count, line 2 the 40 attribute names, then ``file -1|1 x 40``) or its CSV form
(``image_id,5_o_Clock_Shadow,...``), optional ``list_eval_partition`` (0 train, 1 val, 2 test) and
``list_landmarks_align_celeba`` (eyes, nose, mouth corners: 5 points), in the root or ``Anno/``
and ``Eval/``. The 40 attributes are binary factors (no/yes). Attribute rows without an image,
and images without attributes, are skipped and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mien.data.factors import Factor
from mien.data.formats.base import Layout, Record, read_table
from mien.errors import DataError

SPLITS = {"0": "train", "1": "val", "2": "test"}
IMAGE_DIR = "img_align_celeba"


def _find(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "Anno", root / "Eval"):
        for suffix in (".txt", ".csv"):
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def detect(root: Path) -> bool:
    return _find(root, "list_attr_celeba") is not None and (root / IMAGE_DIR).is_dir()


def _image_dir(root: Path) -> Path:
    images = root / IMAGE_DIR
    return images / IMAGE_DIR if (images / IMAGE_DIR).is_dir() else images


def _table(path: Path, first: str) -> tuple[list[str], list[list[str]]]:
    """Header (with the file column named ``first``) and rows of a CelebA list, txt or csv."""
    if path.suffix == ".csv":
        return read_table(path, (first,))
    try:
        lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} ({e}); use the data set's original file") from None
    if lines and len(lines[0]) == 1 and lines[0][0].isdigit():
        lines = lines[1:]  # the count line
    if not lines:
        raise DataError(f"{path} is empty; use the data set's original file")
    headless = Path(lines[0][0]).suffix.lower() in (".jpg", ".jpeg", ".png")
    header = [first, *(f"value{i}" for i in range(1, len(lines[0])))] if headless else [first, *lines[0]]
    rows = lines if headless else lines[1:]
    for n, row in enumerate(rows):
        if len(row) != len(header):
            raise DataError(f"{path}: row {n + 1} ({row[0]}) has {len(row)} fields, {len(header)} expected "
                            f"(a file name and {len(header) - 1} values); use the data set's original file")
    return header, rows


def read(root: Path) -> Layout:
    attr_path = _find(root, "list_attr_celeba")
    if attr_path is None:
        raise DataError(f"{root} has no list_attr_celeba.txt or .csv; CelebA needs its attribute list")
    header, rows = _table(attr_path, "image_id")
    names = header[1:]
    factors = [Factor(n, "binary", values=("no", "yes"), group="attribute") for n in names]
    images = _image_dir(root)
    on_disk = {p.name for p in images.iterdir() if p.is_file()} if images.is_dir() else set()
    layout = Layout("celeba", root, [], factors)
    splits = {}
    if (split_path := _find(root, "list_eval_partition")) is not None:
        _, split_rows = _table(split_path, "image_id")
        splits = {r[0]: SPLITS.get(r[1], r[1]) for r in split_rows}
    else:
        layout.notes.append("no list_eval_partition: no official splits")
    marks = {}
    if (lm_path := _find(root, "list_landmarks_align_celeba")) is not None:
        _, lm_rows = _table(lm_path, "image_id")
        marks = {r[0]: np.array(r[1:11], dtype=np.float32).reshape(5, 2) for r in lm_rows}
    seen = set()
    for row in rows:
        name = row[0]
        if name not in on_disk:
            layout.skip("attribute rows without an image", name)
            continue
        try:
            values = {n: int(int(v) > 0) for n, v in zip(names, row[1:])}
        except ValueError:
            raise DataError(f"{attr_path}: row {name} has a value that is not -1, 0 or 1; fix that row") from None
        seen.add(name)
        layout.records.append(Record(name, path=images / name, factors=values, split=splits.get(name, ""),
                                     landmarks=marks.get(name)))
    for name in sorted(on_disk - seen):
        if Path(name).suffix.lower() in (".jpg", ".jpeg", ".png"):
            layout.skip("images without attributes", name)
    return layout.check()
