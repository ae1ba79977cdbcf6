"""Shipped and user-trained evaluator weights: a folder with ``model.safetensors`` and
``meta.json`` (kind, architecture config, world version and fingerprint, seed, steps and
held-out scores). Loading never unpickles (design.md, Checkpoints)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from mien.errors import ConfigError, DataError

SHIPPED = Path(__file__).parent / "weights"


def world_fingerprint(size: int) -> str:
    """sha256 (16 hex digits) of eight world faces of seed 0: changes when the world renders differently."""
    from mien.data.world import WorldDataset

    faces = WorldDataset(8, size, seed=0).batch(range(8))["image"]
    return hashlib.sha256(((faces + 1) * 127.5).round().byte().numpy().tobytes()).hexdigest()[:16]


def save_weights(model: torch.nn.Module, out_dir, kind: str, meta: dict) -> Path:
    """Write ``model`` (an Evaluator or SequenceClassifier) and its meta.json into ``out_dir``, atomically."""
    from safetensors.torch import save

    from mien import __version__
    from mien.io import atomic_write_bytes, atomic_write_text, ensure_writable_dir

    out = ensure_writable_dir(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out / "model.safetensors", save(state))
    full = {"kind": kind, "mien_version": __version__, "config": dataclasses.asdict(model.config), **meta}
    atomic_write_text(out / "meta.json", json.dumps(full, indent=2, default=float))
    return out


def read_meta(path) -> dict:
    """meta.json of a weights folder, with one clear error when it is missing or corrupt."""
    d = Path(path)
    if not (d / "model.safetensors").is_file() or not (d / "meta.json").is_file():
        raise DataError(f"{d} is not an evaluator weights folder (needs model.safetensors and meta.json); "
                        "pass a folder written by `mien evaluator train`")
    try:
        return json.loads((d / "meta.json").read_text())
    except json.JSONDecodeError:
        raise DataError(f"{d / 'meta.json'} is corrupt; retrain with `mien evaluator train`") from None


def load_weights(path, kind: str):
    """Rebuild the network stored in folder ``path`` (kind 'evaluator' or 'sequence'), in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from mien.config import from_dict
    from mien.evaluator.network import Evaluator, EvaluatorConfig
    from mien.evaluator.sequence import SequenceClassifier, SequenceClassifierConfig

    d = Path(path)
    meta = read_meta(d)
    if meta.get("kind") != kind:
        raise DataError(f"{d} holds a {meta.get('kind')!r} network, not a {kind!r} one")
    cls, cfg_cls = (Evaluator, EvaluatorConfig) if kind == "evaluator" else (SequenceClassifier, SequenceClassifierConfig)
    model = cls(from_dict(cfg_cls, meta.get("config"), "config."))
    try:
        model.load_state_dict(load_file(str(d / "model.safetensors")))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise DataError(f"{d / 'model.safetensors'} is corrupt or does not match meta.json "
                        f"({str(e).splitlines()[0]}); retrain with `mien evaluator train`") from None
    model.meta = meta
    return model.eval().requires_grad_(False)


_CACHE: dict = {}


def _cached(path: Path, kind: str):
    """load_weights, cached per process by path and file version (a rewritten file is reloaded)."""
    stat = (path / "model.safetensors").stat() if (path / "model.safetensors").is_file() else None
    key = (kind, str(path.resolve()), stat and (stat.st_mtime_ns, stat.st_size))
    if key not in _CACHE:
        _CACHE[key] = load_weights(path, kind)
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


def load_sequence_classifier(path=None):
    """The landmark-sequence classifier: the shipped weights or the folder ``path``. Cached."""
    return _cached(Path(path) if path is not None else SHIPPED / "sequence", "sequence")
