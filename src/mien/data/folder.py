"""Image-folder data sets and the export layout that ``mien data synth`` writes.

:class:`FolderDataset` reads three layouts, first match wins:

(a) a mien export: ``DIR/images/000000.png ...``, ``DIR/metadata.csv`` and ``DIR/factors.json``
    (the factor schema; without it the schema is inferred from the CSV columns);
(b) a plain folder of images (png, jpg, jpeg, bmp, webp; recursive, sorted, hidden entries skipped);
(c) class subfolders ``DIR/<class>/*.png`` (two or more, no images directly in ``DIR``): a
    ``label`` per class (sorted names) and one categorical factor ``class``.

``metadata.csv`` columns: ``file_name`` (relative to ``DIR``); optionally ``split`` (train, val,
test: ``FolderDataset(split=...)`` keeps one; ``mien data prepare`` writes it); one column per factor
(categorical and binary values as integer codes or as labels, continuous values as numbers);
2-D landmarks as ``lm2d_x0..lm2d_x67, lm2d_y0..lm2d_y67`` in [0, 1] image coordinates and 3-D
landmarks as ``lm3d_x0.., lm3d_y0.., lm3d_z0..`` (all x columns, then all y, then all z).
:func:`export_samples` writes this layout from sample dicts (design.md, Contracts).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text
from torch.utils.data import Dataset

from mien.data.factors import Factor, by_name, schema_from_json, schema_to_json
from mien.data.images import read_rgb
from mien.errors import ConfigError, DataError, OutputError
from mien.io import atomic_save_png, atomic_write_bytes, atomic_write_text, claim_folder, ensure_writable_dir, is_incomplete

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
EXPORT_NAMES = ("images", "metadata.csv", "factors.json", "sequences.npz")
LANDMARK_KEYS = {"landmarks2d": ("lm2d", "xy"), "landmarks3d": ("lm3d", "xyz")}
MAX_INFERRED_CATEGORIES = 20
DEFAULT_LABEL_FACTORS = ("expression", "class")
_EXPORTED_IMAGE = re.compile(r"^\d{6,}\.png$")


def landmark_columns(key: str, n_points: int) -> list[str]:
    """CSV column names of ``n_points`` landmarks of sample key ``landmarks2d`` or ``landmarks3d``."""
    prefix, axes = LANDMARK_KEYS[key]
    return [f"{prefix}_{axis}{i}" for axis in axes for i in range(n_points)]


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _list_images(root: Path) -> list[Path]:
    found = (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and _visible(p, root))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _load_rgb(path: Path) -> Image.Image:
    """Upright 8-bit RGB (EXIF orientation, CMYK, 16-bit: :mod:`mien.data.images`)."""
    try:
        return Image.fromarray(read_rgb(path))
    except DataError as e:
        raise DataError(f"cannot read image {path} ({e}); replace or remove it, or load with skip_bad=True") from None


def _is_readable_image(path: Path) -> bool:
    """Pillow's verify (structure, checksums) and a full decode both succeed."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
    except Exception:  # any decoder failure means the file is bad
        return False
    return True


class _Metadata:
    """``metadata.csv`` parsed into per-column string lists, with the CSV line of each row."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                self.header = [h.strip() for h in next(reader, [])]
                rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"cannot read {path} ({e}); fix the file or re-export the data set") from None
        if "file_name" not in self.header:
            raise DataError(
                f"{path} has no 'file_name' column; add one with each image's path relative to {path.parent}"
            )
        for line, row in rows:
            if len(row) < len(self.header):
                raise DataError(
                    f"{path} line {line} has {len(row)} fields but the header has {len(self.header)}; fix that row"
                )
        self.lines = [line for line, _ in rows]
        self.columns = {name: [row[j].strip() for _, row in rows] for j, name in enumerate(self.header)}

    def fail(self, row: int, what: str) -> DataError:
        return DataError(f"{self.path} line {self.lines[row]}: {what}")

    def numbers(self, name: str) -> np.ndarray:
        out = np.empty(len(self.lines))
        for r, raw in enumerate(self.columns[name]):
            try:
                out[r] = float(raw)
            except ValueError:
                what = f"{name} value {raw!r} is not a number; fix the value or remove the column"
                raise self.fail(r, what) from None
        return out

    def codes(self, factor: Factor) -> np.ndarray:
        out = np.empty(len(self.lines), dtype=np.int64)
        for r, raw in enumerate(self.columns[factor.name]):
            try:
                out[r] = factor.index(raw)
            except DataError as e:
                raise self.fail(r, f"{e}; fix the value or factors.json") from None
        return out

    def landmarks(self, key: str) -> np.ndarray | None:
        """An N×P×D float32 array from the landmark columns of ``key``, None if there are none."""
        prefix, axes = LANDMARK_KEYS[key]
        n_points = sum(1 for h in self.header if re.fullmatch(rf"{prefix}_{axes[0]}\d+", h))
        if n_points == 0:
            return None
        names = landmark_columns(key, n_points)
        missing = [c for c in names if c not in self.columns]
        if missing:
            raise DataError(f"{self.path} lacks landmark column {missing[0]}; give all of {names[0]}..{names[-1]}")
        flat = np.stack([self.numbers(c) for c in names], axis=1)
        return flat.reshape(-1, len(axes), n_points).transpose(0, 2, 1).astype(np.float32)

    def factor_columns(self) -> list[str]:
        landmark = re.compile(r"lm[23]d_[xyz]\d+")
        return [h for h in self.header if h not in ("file_name", "split") and not landmark.fullmatch(h)]


def _infer_factor(name: str, raw: list[str]) -> tuple[Factor, np.ndarray] | None:
    """A factor and its per-row values from a CSV column without a schema; None if constant.

    Integer columns with at most 20 distinct values are categorical (binary if exactly {0, 1}),
    other numeric columns continuous over their observed range, text columns categorical over
    their sorted distinct strings.
    """
    try:
        numbers = np.array([float(v) for v in raw])
        numeric = bool(np.isfinite(numbers).all())
    except ValueError:
        numeric = False
    if not numeric:
        labels = sorted(set(raw))
        if len(labels) < 2:
            return None
        code = {label: c for c, label in enumerate(labels)}
        return Factor(name, "categorical", values=tuple(labels)), np.array([code[v] for v in raw])
    distinct = np.unique(numbers)
    if len(distinct) < 2:
        return None
    if np.all(distinct == np.round(distinct)) and len(distinct) <= MAX_INFERRED_CATEGORIES:
        kind = "binary" if distinct.tolist() == [0.0, 1.0] else "categorical"
        values = tuple(str(int(v)) for v in distinct)
        return Factor(name, kind, values=values), np.searchsorted(distinct, numbers)
    return Factor(name, "continuous", range=(float(distinct[0]), float(distinct[-1]))), numbers


class FolderDataset(Dataset):
    """Sample dicts from an image folder in one of the layouts of this module's docstring.

    ``size`` resizes the shorter side and center-crops to ``size``×``size`` (``crop="center"``)
    or squashes the whole image (``crop="none"``); 2-D landmarks follow the crop. ``label`` is the
    code of factor ``label_factor`` (default: ``expression``, else ``class``, when present).
    With ``skip_bad=True`` every image is decoded up front and unreadable ones are left out and
    listed in ``.skipped``; otherwise a corrupt image raises :class:`DataError` when loaded.
    ``split`` keeps the rows of one value of the ``split`` column of ``metadata.csv``.
    """

    def __init__(
        self,
        root,
        size: int | None = None,
        skip_bad: bool = False,
        crop: str = "center",
        label_factor: str | None = None,
        split: str | None = None,
    ):
        self.root = Path(root)
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ConfigError(f"size must be a positive integer, got {size!r}")
        if crop not in ("center", "none"):
            raise ConfigError(f"crop must be 'center' or 'none', got {crop!r}")
        self.size, self.crop = size, crop
        if not self.root.exists():
            raise DataError(f"data folder {self.root} does not exist; check the path")
        if not self.root.is_dir():
            raise DataError(f"{self.root} is a file, not a folder; pass the folder that holds the images")
        if is_incomplete(self.root):
            raise DataError(f"{self.root} is an incomplete mien export (its writing was interrupted or is still "
                            "going on); wait for it or export it again")
        self.factors: list[Factor] = []
        self._splits: list[str] | None = None
        self._values: dict[str, np.ndarray] = {}
        self._landmarks: dict[str, np.ndarray] = {}
        if (self.root / "metadata.csv").is_file():
            self._read_export()
        else:
            self._read_folder()
        if not self.files:
            kinds = ", ".join(s[1:] for s in IMAGE_SUFFIXES)
            raise DataError(f"no images ({kinds}) found in {self.root}; put images there or pass another folder")
        if split is not None:
            self._keep(self._split_mask(split))
        self.skipped: list[Path] = []
        if skip_bad:
            keep = np.array([_is_readable_image(p) for p in self.files], dtype=bool)
            self.skipped = [p for p, ok in zip(self.files, keep) if not ok]
            self._keep(keep)
            if not self.files:
                raise DataError(f"none of the {len(self.skipped)} images in {self.root} can be read; check the files")
        self.label_factor = self._resolve_label(label_factor)

    def _keep(self, keep: np.ndarray):
        self.files = [p for p, ok in zip(self.files, keep) if ok]
        self._values = {k: v[keep] for k, v in self._values.items()}
        self._landmarks = {k: v[keep] for k, v in self._landmarks.items()}

    def _split_mask(self, split: str) -> np.ndarray:
        splits = self._splits or []
        if not splits:
            raise ConfigError(f"{self.root} has no split column in metadata.csv; drop data.split or prepare the "
                              "data set with mien data prepare")
        keep = np.array([s == split for s in splits], dtype=bool)
        if not keep.any():
            raise ConfigError(f"{self.root} has no split {split!r}; its splits: {', '.join(sorted(set(splits)))}")
        return keep

    def _read_export(self):
        meta = _Metadata(self.root / "metadata.csv")
        self.files = [self.root / name for name in meta.columns["file_name"]]
        self._splits = meta.columns.get("split")
        for r, path in enumerate(self.files):
            if not path.is_file():
                raise meta.fail(r, f"image {path} does not exist; fix its file_name or re-export the data set")
        schema_path = self.root / "factors.json"
        if schema_path.is_file():
            try:
                text = schema_path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise DataError(f"cannot read {schema_path} ({e}); re-export the data set") from None
            self.factors = schema_from_json(text, source=str(schema_path))
            for f in self.factors:
                if f.name not in meta.columns:
                    raise DataError(
                        f"{meta.path} has no column for factor {f.name!r} of {schema_path}; re-export the data set"
                    )
                self._values[f.name] = meta.codes(f) if f.discrete else meta.numbers(f.name)
                if not f.discrete and not np.isfinite(self._values[f.name]).all():
                    r = int(np.argmin(np.isfinite(self._values[f.name])))
                    raise meta.fail(r, f"{f.name} value {meta.columns[f.name][r]!r} is not finite; fix the value")
        else:
            for name in meta.factor_columns():
                inferred = _infer_factor(name, meta.columns[name])
                if inferred is not None:
                    self.factors.append(inferred[0])
                    self._values[name] = inferred[1]
        for key in LANDMARK_KEYS:
            array = meta.landmarks(key)
            if array is not None:
                self._landmarks[key] = array

    def _read_folder(self):
        self.files = _list_images(self.root)
        classes = sorted({p.relative_to(self.root).parts[0] for p in self.files})
        if len(classes) >= 2 and all(len(p.relative_to(self.root).parts) > 1 for p in self.files):
            self.factors = [Factor("class", "categorical", values=tuple(classes))]
            self._values["class"] = np.array([classes.index(p.relative_to(self.root).parts[0]) for p in self.files])

    def _resolve_label(self, label_factor: str | None) -> str | None:
        names = by_name(self.factors)
        if label_factor is None:
            return next((n for n in DEFAULT_LABEL_FACTORS if n in names), None)
        if label_factor not in names:
            choices = ", ".join(names) or "none"
            raise ConfigError(f"label_factor {label_factor!r} is not a factor of {self.root}; choose one of: {choices}")
        if not names[label_factor].discrete:
            raise ConfigError(f"label_factor {label_factor!r} is continuous; choose a categorical or binary factor")
        return label_factor

    def __len__(self) -> int:
        return len(self.files)

    def annotation(self, i: int) -> tuple[dict, np.ndarray | None]:
        """Factor values (codes for discrete factors) and 68 x 2 landmarks in [0, 1] (or None) of item ``i``."""
        values = {f.name: (int if f.discrete else float)(self._values[f.name][i]) for f in self.factors}
        landmarks2d = self._landmarks.get("landmarks2d")
        return values, None if landmarks2d is None else landmarks2d[i]

    def __getitem__(self, i: int) -> dict:
        image = _load_rgb(self.files[i])
        landmarks2d = self._landmarks.get("landmarks2d")
        landmarks2d = None if landmarks2d is None else landmarks2d[i]
        if self.size is not None:
            w, h = image.size
            box, side = (0, 0, w, h), None
            if self.crop == "center":
                side = min(w, h)
                box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
                if landmarks2d is not None:
                    landmarks2d = ((landmarks2d * [w, h] - box[:2]) / side).astype(np.float32)
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
        pixels = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        sample = {"image": torch.from_numpy(pixels).permute(2, 0, 1).contiguous()}
        if self.factors:
            sample["factors"] = {f.name: (int if f.discrete else float)(self._values[f.name][i]) for f in self.factors}
            binary = [f.name for f in self.factors if f.kind == "binary"]
            if binary:
                sample["attributes"] = torch.tensor([sample["factors"][n] for n in binary], dtype=torch.float32)
        if self.label_factor is not None:
            sample["label"] = int(self._values[self.label_factor][i])
        if landmarks2d is not None:
            sample["landmarks2d"] = torch.tensor(landmarks2d)
        if "landmarks3d" in self._landmarks:
            sample["landmarks3d"] = torch.tensor(self._landmarks["landmarks3d"][i])
        return sample


def _image_to_pil(image, i: int) -> Image.Image:
    x = torch.as_tensor(image).detach().to("cpu", torch.float32)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise DataError(f"sample {i}: image must be C×H×W with C = 1 or 3, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise DataError(f"sample {i}: image contains NaN or inf; check the model or data that produced it")
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).expand(3, -1, -1).permute(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(u8.numpy()))


def _factor_cells(sample: dict, factors: Sequence[Factor], i: int) -> list[str]:
    values = sample.get("factors", {})
    cells = []
    for f in factors:
        if f.name not in values:
            raise DataError(
                f"sample {i} has no value for factor {f.name!r}; give every sample all factors of the schema"
            )
        v = values[f.name]
        try:
            cells.append(str(f.index(v)) if f.discrete else repr(float(v)))
        except (TypeError, ValueError):
            raise DataError(f"sample {i}: factor {f.name!r} value {v!r} is not a number") from None
    return cells


def _landmark_cells(sample: dict, key: str, n_points: int, i: int) -> list[str]:
    if key not in sample:
        raise DataError(f"sample {i} has no {key} but the first sample had; give all samples the same keys")
    dims = len(LANDMARK_KEYS[key][1])
    array = torch.as_tensor(sample[key]).detach().to("cpu", torch.float32).numpy()
    if array.shape != (n_points, dims):
        raise DataError(f"sample {i}: {key} must have shape {n_points}×{dims}, got {array.shape}")
    return [str(v) for v in array.T.ravel()]  # str of float32 is its shortest exact form


def _check_export_target(out_dir: Path):
    """Refuse a non-empty folder unless it holds only what a mien export writes."""
    if not out_dir.is_dir():
        return
    foreign = [p.name for p in out_dir.iterdir() if p.name not in EXPORT_NAMES and not p.name.startswith(".")]
    images = out_dir / "images"
    if images.is_dir():
        extra = (p for p in images.iterdir() if not (_EXPORTED_IMAGE.match(p.name) or p.name.startswith(".")))
        foreign += [f"images/{p.name}" for p in extra]
    if foreign:
        raise OutputError(
            f"{out_dir} is not empty and is not a mien export (it holds {sorted(foreign)[0]}); "
            "choose a new or empty folder"
        )


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f} img/s" if task.speed else "? img/s", style="progress.data.speed")


def progress_bar(enabled: bool = True) -> Progress:
    """The bar of long data jobs, on stderr: description, bar, done/total, rate, time left."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not enabled,
    )


def _numeric_array(name: str, value) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        array = None
    if array is None or array.dtype == object:
        raise DataError(f"sequence {name!r} is not a numeric array; give numpy arrays of numbers")
    return array


def _remove(path: Path):
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        raise OutputError(f"cannot remove {path} ({e.strerror}); fix its permissions or choose another --out") from None


def export_samples(
    samples: Iterable[dict],
    factors: Sequence[Factor] | None,
    out_dir,
    n: int | None = None,
    sequences: dict[str, np.ndarray] | None = None,
    progress: bool = True,
) -> Path:
    """Write sample dicts as layout (a): ``images/``, then ``factors.json``, ``sequences.npz``, ``metadata.csv``.

    Every file is written atomically and ``metadata.csv`` last (an older one is removed first),
    so an interrupted export never leaves a metadata file that disagrees with the images. The
    folder is held exclusively while it is written (a second export into it is refused) and
    marked incomplete until the last file is in place (:func:`mien.io.claim_folder`); reading an
    incomplete export is an error. Only a
    new, empty or previous-export folder is written to; stale images of a previous export are
    removed. Categorical and binary factors are stored as integer codes. Returns ``out_dir``.
    """
    factors = list(factors or [])
    out_dir = Path(out_dir)
    arrays = {k: _numeric_array(k, v) for k, v in (sequences or {}).items()}
    _check_export_target(out_dir)
    with claim_folder(out_dir):
        _write_export(samples, factors, out_dir, n, arrays, progress)
    return out_dir


def _write_export(samples, factors: list[Factor], out_dir: Path, n: int | None, arrays: dict, progress: bool) -> None:
    """The files of :func:`export_samples`, into a folder it holds (``claim_folder``)."""
    images_dir = ensure_writable_dir(out_dir / "images")
    _remove(out_dir / "metadata.csv")
    total = n if n is not None else (len(samples) if hasattr(samples, "__len__") else None)
    if n is not None:
        samples = itertools.islice(samples, n)

    header = ["file_name", *(f.name for f in factors)]
    landmark_keys: list[tuple[str, int]] = []
    rows = []
    bar = progress_bar(progress)
    with bar:
        task = bar.add_task(f"export {out_dir}", total=total)
        for i, sample in enumerate(samples):
            if i == 0:
                for key in LANDMARK_KEYS:
                    if key in sample:
                        landmark_keys.append((key, len(sample[key])))
                        header += landmark_columns(key, len(sample[key]))
            name = f"images/{i:06d}.png"
            atomic_save_png(_image_to_pil(sample["image"], i), out_dir / name)
            row = [name, *_factor_cells(sample, factors, i)]
            for key, n_points in landmark_keys:
                row += _landmark_cells(sample, key, n_points, i)
            rows.append(row)
            bar.advance(task)
    if not rows:
        raise DataError("no samples to export; check the sample source and n")

    written = {r[0].split("/", 1)[1] for r in rows}
    for p in images_dir.iterdir():
        if _EXPORTED_IMAGE.match(p.name) and p.name not in written:
            _remove(p)
    atomic_write_text(out_dir / "factors.json", schema_to_json(factors))
    if arrays:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(out_dir / "sequences.npz", buffer.getvalue())
    else:
        _remove(out_dir / "sequences.npz")
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *rows])
    atomic_write_text(out_dir / "metadata.csv", text.getvalue())
