"""Checkpoint directories (design.md, Checkpoints): ``model.safetensors`` (weights, no pickle),
``config.yaml`` (enough to rebuild the model) and ``meta.json`` (version, data, steps, metrics).
Files are written atomically, weights first; :func:`load` rebuilds any model."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from mien import __version__
from mien.errors import DataError
from mien.io import atomic_write_bytes, atomic_write_text, ensure_writable_dir

FILES = ("model.safetensors", "config.yaml", "meta.json")


def save(model, out_dir, config: dict, meta: dict) -> Path:
    """Write (or atomically replace) the checkpoint files of ``model`` in ``out_dir``."""
    from safetensors.torch import save

    out = ensure_writable_dir(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out / "model.safetensors", save(state))
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    atomic_write_text(out / "meta.json", json.dumps({"mien_version": __version__, **meta}, indent=2, default=float))
    return out


def read_config(ckpt_dir) -> dict:
    d = Path(ckpt_dir)
    if not d.is_dir():
        raise DataError(f"checkpoint folder {d} does not exist; pass the output folder of `mien train`")
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise DataError(f"{d} is not a complete mien checkpoint (missing {', '.join(missing)}); "
                        "pass a folder written by `mien train`")
    try:
        config = yaml.safe_load((d / "config.yaml").read_text())
    except yaml.YAMLError:
        raise DataError(f"{d / 'config.yaml'} is corrupt; restore it from the run or retrain") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise DataError(f"{d / 'config.yaml'} has no model section; restore it from the run or retrain")
    return config


def training_world(ckpt_dir, n: int, seed: int, size: int | None = None, **fixed):
    """``n`` world faces drawn as the checkpoint's training data were (design, fixed factors,
    ranges, weights, identities), from ``seed``, at ``size`` (default: the training size); ``fixed``
    holds more factors constant (e.g. ``expression="neutral"``)."""
    from mien.data.source import DEFAULT_SIZE
    from mien.data.world import WorldDataset

    data = read_config(ckpt_dir).get("data") or {}
    return WorldDataset(n, size or data.get("size", DEFAULT_SIZE), seed, data.get("design", "iid"),
                        fixed={**(data.get("fixed") or {}), **fixed}, ranges=data.get("ranges") or {},
                        weights=data.get("weights") or {},
                        n_identities=data.get("n_identities"), labels=data.get("labels") or ())


def read_meta(ckpt_dir) -> dict:
    try:
        return json.loads((Path(ckpt_dir) / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise DataError(f"{Path(ckpt_dir) / 'meta.json'} is corrupt; restore it from the run or retrain") from None


def read_weights(ckpt_dir, device: str | torch.device = "cpu") -> dict:
    """The tensors of ``model.safetensors`` in a checkpoint folder (never unpickled)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(ckpt_dir)
    read_config(d)
    try:
        return load_file(str(d / "model.safetensors"), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{d / 'model.safetensors'} is corrupt or unreadable ({str(e).splitlines()[0]}); "
                        "retrain or restore the file") from None


def update_meta(ckpt_dir, **fields) -> dict:
    """Add ``fields`` to a checkpoint's meta.json (atomically); returns the new meta."""
    meta = {**read_meta(ckpt_dir), **fields}
    atomic_write_text(Path(ckpt_dir) / "meta.json", json.dumps(meta, indent=2, default=float))
    return meta


def load(ckpt_dir, device: str | torch.device = "cpu"):
    """Rebuild the model of a checkpoint folder with its weights, in eval mode."""
    from mien.models.base import build_model

    d = Path(ckpt_dir)
    model = build_model(read_config(d)["model"])
    try:
        model.load_state_dict(read_weights(d, device))
    except RuntimeError as e:
        raise DataError(f"{d / 'model.safetensors'} does not match its config.yaml "
                        f"({str(e).splitlines()[-1].strip()}); use the files written together by one run") from None
    return model.to(device).eval()
