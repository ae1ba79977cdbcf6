"""Files of system Z1: landmark sequences in and out (.npz/.npy), face animations drawn by the world
renderer (GIF/MP4) and a grid of landmark trajectories (frontal x-y paths, one tile a sequence)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from mien.data.world.sequences import render_sequence, save_animation
from mien.errors import DataError
from mien.io import atomic_save_png, atomic_write_bytes, ensure_writable_dir
from mien.report.grid import REGIONS


def read_array(path, what: str) -> torch.Tensor:
    """The array of a .npy file, or the ``sequence`` (else the only) array of a .npz file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} file {p} does not exist; pass an .npz or .npy file of landmarks")
    try:
        data = np.load(p, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            keys = list(data.keys())
            if "sequence" not in keys and len(keys) != 1:
                raise DataError(f"{p} holds {', '.join(keys) or 'no arrays'}; store the {what} as 'sequence'")
            data = data["sequence" if "sequence" in keys else keys[0]]
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {p} as .npz/.npy ({e}); write it with numpy.save or numpy.savez") from None
    return torch.as_tensor(np.asarray(data, dtype=np.float32))


def save_sequences(sequences: torch.Tensor, path, **extra) -> Path:
    """``sequences`` (B x F x N x 3) and any ``extra`` arrays into one .npz, atomically."""
    buf = io.BytesIO()
    np.savez(buf, sequences=sequences.detach().cpu().numpy(), **{k: np.asarray(v) for k, v in extra.items()})
    return atomic_write_bytes(Path(path), buf.getvalue())


def trajectory_grid(sequences: torch.Tensor, labels: list[str] | None = None, tile: int = 192) -> Image.Image:
    """One tile per sequence: the frontal (x, y) path of every landmark over the frames, coloured by
    facial region, with the first frame as dots."""
    seq = sequences.detach().cpu().float()
    n = len(seq)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    canvas = Image.new("RGB", (cols * tile, rows * (tile + 12)), "white")
    draw = ImageDraw.Draw(canvas)
    colours = [c for start, end, c in REGIONS.values() for _ in range(start, end)]
    for i in range(n):
        xy = seq[i, :, :, :2]
        lo, hi = xy.flatten(0, 1).min(0).values, xy.flatten(0, 1).max(0).values
        span = float((hi - lo).max().clamp_min(1e-6))
        px = (xy - lo) / span * (tile - 16) + 8
        ox, oy = (i % cols) * tile, (i // cols) * (tile + 12)
        for k in range(xy.shape[1]):
            colour = colours[k] if len(colours) == xy.shape[1] else (0, 0, 0)
            path = [(ox + float(p[0]), oy + tile - float(p[1])) for p in px[:, k]]
            draw.line(path, fill=colour, width=1)
            x, y = path[0]
            draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=(0, 0, 0))
        if labels:
            draw.text((ox + 4, oy + tile), str(labels[i]), fill=(0, 0, 0))
    return canvas


def write_outputs(sequences: torch.Tensor, out_dir, labels: list[str], size: int = 64, fmt: str = "gif",
                  fps: int = 12) -> list[Path]:
    """sequences.npz, one animation per sequence and trajectories.png in ``out_dir``."""
    out = ensure_writable_dir(out_dir)
    written = [save_sequences(sequences, out / "sequences.npz", labels=np.array(labels))]
    for i, seq in enumerate(sequences):
        path = out / f"sequence_{i:03d}.{fmt}"
        save_animation(render_sequence(seq.cpu(), size), path, fps)
        written.append(path)
    written.append(atomic_save_png(trajectory_grid(sequences, labels), out / "trajectories.png"))
    return written
