"""Shipped and user-trained evaluator weights: mien checkpoint folders (``model.safetensors``,
``config.yaml``, ``meta.json``: world version and fingerprint, recipe, steps, held-out scores),
read by the one checkpoint reader. Loading never unpickles (design.md, Checkpoints)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mien.errors import ConfigError, DataError
from mien.models import checkpoint

SHIPPED = Path(__file__).parent / "weights"


def world_fingerprint(size: int) -> str:
    """sha256 (16 hex digits) of eight world faces of seed 0: changes when the world renders differently."""
    from mien.data.world import WorldDataset

    faces = WorldDataset(8, size, seed=0).batch(range(8))["image"]
    return hashlib.sha256(((faces + 1) * 127.5).round().byte().numpy().tobytes()).hexdigest()[:16]


def load_network(path, family: str):
    """The network of checkpoint folder ``path`` (family ``evaluator`` or ``sequence_classifier``),
    frozen in eval mode, with its meta.json as ``.meta``."""
    d = Path(path)
    name = checkpoint.read_config(d)["model"].get("name")
    if name != family:
        raise DataError(f"{d} holds a {name!r} model, not an {family!r}; pass a folder written by `mien evaluator train`")
    model = checkpoint.load(d)
    model.meta = checkpoint.read_meta(d)
    return model.requires_grad_(False)


_CACHE: dict = {}


def _cached(path: Path, family: str):
    """load_network, cached per process by path and file version (a rewritten file is reloaded)."""
    stat = (path / "model.safetensors").stat() if (path / "model.safetensors").is_file() else None
    key = (family, str(path.resolve()), stat and (stat.st_mtime_ns, stat.st_size))
    if key not in _CACHE:
        _CACHE[key] = load_network(path, family)
    return _CACHE[key]


def load_evaluator(size: int = 64, path=None):
    """The evaluator for ``size``-px images: the shipped weights (32 or 64 px), or the folder
    ``path`` (written by ``mien evaluator train --out``). Cached per process."""
    if path is None:
        path = SHIPPED / f"evaluator_{size}"
        if not path.is_dir():
            shipped = sorted(int(p.name.split("_")[1]) for p in SHIPPED.glob("evaluator_*"))
            raise ConfigError(f"no shipped evaluator for {size} px (shipped: {shipped}); train one with "
                              f"`mien evaluator train --size {size} --out DIR` and pass that folder")
    return _cached(Path(path), "evaluator")


def evaluator_for(size: int, path=None):
    """The evaluator that scores ``size``-px images: the 64-px one from 64 px up, else the 32-px
    one (images are resized to it), or the folder ``path``."""
    return load_evaluator(64 if size >= 64 else 32, path)


def load_sequence_classifier(path=None):
    """The landmark-sequence classifier: the shipped weights or the folder ``path``. Cached."""
    return _cached(Path(path) if path is not None else SHIPPED / "sequence", "sequence_classifier")
