"""The model zoo (issue 6): small checkpoints shipped inside the package. Each entry is a normal
checkpoint folder (design.md, Checkpoints) whose meta.json adds ``recipe`` (the preset ``zoo/<name>``,
shipped in ``mien/configs/zoo/``, that ``mien train`` reproduces it with) and ``zoo_metrics`` (numbers measured
on it with ``mien eval``). Floating-point weights are stored in float16 to keep the package
small; loading casts them back to float32."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from mien.errors import ConfigError, OutputError
from mien.models.checkpoint import FILES, read_config, read_meta

ZOO = Path(__file__).parent / "weights"


def names() -> list[str]:
    return sorted(p.name for p in ZOO.iterdir() if (p / "model.safetensors").is_file()) if ZOO.is_dir() else []


def path(name: str) -> Path:
    """The shipped folder of zoo model ``name``."""
    if name not in names():
        raise ConfigError(f"no zoo model {name!r}; available: {', '.join(names()) or 'none'} (see `mien zoo list`)")
    return ZOO / name


def entries() -> list[dict]:
    """One summary per zoo model: name, model family, parameters, training steps, recipe, metrics."""
    out = []
    for name in names():
        meta = read_meta(ZOO / name)
        out.append({"name": name, "model": meta.get("model"), "parameters": meta.get("parameters"),
                    "steps": meta.get("steps"), "recipe": meta.get("recipe"), "metrics": meta.get("zoo_metrics", {})})
    return out


def get(name: str, out) -> Path:
    """Copy zoo model ``name`` to the folder ``out``, written whole or not at all. ``out`` must be
    new, an empty folder or an earlier copy of a zoo model (whose three files are replaced one by
    one, atomically); any other folder is refused, so no file of the user's is ever removed."""
    from mien.io import atomic_write_bytes, ensure_writable_dir

    src, out = path(name), Path(out)
    if _is_zoo_copy(out):
        for f in FILES:
            atomic_write_bytes(out / f, (src / f).read_bytes())
        return out
    _check_new_or_empty(out)
    ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for f in FILES:
            shutil.copy2(src / f, tmp / f)
        os.rename(tmp, out)  # replaces only an empty folder; a folder filled meanwhile makes it fail
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)  # only the temp folder written here
        raise OutputError(f"cannot write {out} ({e.strerror or e}); choose a new or empty --out") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _is_zoo_copy(folder: Path) -> bool:
    """A folder holding exactly the files of a zoo model copied by :func:`get` (and nothing else)."""
    if not folder.is_dir() or sorted(p.name for p in folder.iterdir()) != sorted(FILES):
        return False
    try:
        return "zoo_metrics" in json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False


def _check_new_or_empty(out: Path) -> None:
    """Refuse an existing file, or a folder with anything in it."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, not a folder; choose a new folder for --out")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held:
        raise OutputError(f"{out} is not empty and is not a copy of a zoo model (it holds {held[0]}); "
                          "choose a new or empty folder for --out")


def publish(ckpt, name: str, recipe: str, metrics: dict | None = None, root: Path = ZOO) -> Path:
    """Add the checkpoint folder ``ckpt`` to the zoo as ``name`` with float16 weights, its recipe
    and measured metrics (maintainers; the result ships with the package)."""
    import torch
    from safetensors.torch import load_file, save

    from mien.io import atomic_write_bytes, atomic_write_text, ensure_writable_dir

    read_config(ckpt)  # a complete checkpoint, or one clear error
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"zoo name {name!r}: use letters, digits, '-' and '_'")
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(str(Path(ckpt) / "model.safetensors")).items()}
    out = ensure_writable_dir(Path(root) / name)
    atomic_write_bytes(out / "model.safetensors", save({k: v.contiguous() for k, v in state.items()}))
    shutil.copy2(Path(ckpt) / "config.yaml", out / "config.yaml")
    meta = {**read_meta(ckpt), "recipe": recipe, "zoo_metrics": metrics or {}, "weights_dtype": str(torch.float16)}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, default=float))
    return out
