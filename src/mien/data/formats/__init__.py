"""Readers for the field's data-set layouts, detected from the folder (design.md, data flow):
CelebA, AffectNet, FER2013, FFHQ, and mien's own image folders (the fallback). Each reader's
``read(root)`` returns a :class:`~mien.data.formats.base.Layout`; :func:`open_layout` picks one.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from mien.data.formats.base import Layout, Record
from mien.errors import ConfigError, DataError

LAYOUTS = ("celeba", "affectnet", "fer2013", "ffhq", "folder")  # detection order; folder last


def _reader(name: str):
    return import_module(f"mien.data.formats.{name}")


def detect_layout(root) -> str:
    """The first layout of :data:`LAYOUTS` whose files are in ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder; check the path")
    return next(name for name in LAYOUTS if _reader(name).detect(root))


def open_layout(root, layout: str = "auto") -> Layout:
    """Read ``root`` in ``layout`` (``auto``: :func:`detect_layout`)."""
    root = Path(root)
    if layout not in ("auto", *LAYOUTS):
        raise ConfigError(f"layout {layout!r} is not known; use auto, {', '.join(LAYOUTS)}")
    name = detect_layout(root) if layout == "auto" else layout
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder; check the path")
    return _reader(name).read(root)


def describe(layout: Layout) -> list[str]:
    """Lines for ``mien data inspect``: layout, counts, splits, factors, landmarks, problems."""
    lines = [f"layout: {layout.name}  ({layout.root})", f"images: {len(layout.records)}",
             "splits: " + ", ".join(f"{k} {v}" for k, v in sorted(layout.splits.items()))]
    lines.append(f"factors: {len(layout.factors)}")
    for f in layout.factors:
        what = f"{f.range[0]:g}..{f.range[1]:g}" if f.range else ", ".join(f.values)
        lines.append(f"  {f.name} ({f.kind}): {what}")
    points = layout.landmark_points
    lines.append(f"landmarks: {points} points" if points else "landmarks: none (use prepare --align to detect them)")
    skipped = sum(layout.skipped.values())
    lines.append(f"problems: {skipped} skipped" if skipped or layout.notes else "problems: none")
    for reason, n in layout.skipped.items():
        lines.append(f"  {n} {reason}, e.g. {', '.join(layout.examples[reason][:3])}")
    lines += [f"  {note}" for note in layout.notes]
    return lines


__all__ = ["LAYOUTS", "Layout", "Record", "detect_layout", "open_layout", "describe"]
