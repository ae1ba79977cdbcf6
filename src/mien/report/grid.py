"""PNG grids of faces, optionally with their 68 landmarks and a caption under each tile.

Landmarks follow the iBUG-68 order of the sample-dict contract (design.md) and are drawn as
dots coloured by facial region (:data:`REGIONS`), on tiles upscaled by an integer factor
(nearest neighbour) so that 32 or 64 px faces stay readable.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from mien.errors import DataError
from mien.io import atomic_save_png, ensure_writable_dir

# iBUG-68 regions: (first index, end index, RGB dot colour).
REGIONS = {
    "jaw": (0, 17, (255, 215, 0)),
    "brows": (17, 27, (255, 64, 64)),
    "nose": (27, 36, (64, 160, 255)),
    "eyes": (36, 48, (64, 255, 64)),
    "mouth": (48, 68, (255, 64, 255)),
}
_DEFAULT_DOT = (255, 255, 255)


def to_uint8(images) -> np.ndarray:
    """B×C×H×W floats in [-1, 1] (tensor or array, C = 1 or 3) -> uint8 B×H×W×3.

    Values are clipped to [-1, 1]; NaN is drawn mid-grey so a diverged model still gives a grid.
    """
    x = torch.as_tensor(images).detach().to("cpu", torch.float32)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"images must have shape B×C×H×W with C = 1 or 3, got {tuple(x.shape)}")
    x = torch.nan_to_num(x, nan=0.0).clamp(-1, 1)
    u8 = ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.repeat(u8, 3, axis=3) if u8.shape[3] == 1 else u8


def _dot_colours(n_points: int) -> list[tuple[int, int, int]]:
    if n_points != 68:
        return [_DEFAULT_DOT] * n_points
    return [colour for start, end, colour in REGIONS.values() for _ in range(start, end)]


def image_grid(
    images, nrow: int | None = None, pad: int = 2, landmarks=None, labels=None, scale: int = 1
) -> Image.Image:
    """Tile a batch of images into one RGB picture.

    ``nrow`` is the number of tiles per row (default: a near-square grid), ``pad`` the black
    border in pixels between and around tiles, ``landmarks`` B×N×2 points in [0, 1] image
    coordinates (x, y), ``labels`` one short caption per tile, ``scale`` an integer upscaling.
    """
    tiles = to_uint8(images)
    b, h, w, _ = tiles.shape
    if not isinstance(scale, int) or scale < 1:
        raise DataError(f"scale must be a positive integer, got {scale!r}")
    if pad < 0:
        raise DataError(f"pad must be >= 0, got {pad}")
    if labels is not None and len(labels) != b:
        raise DataError(f"got {len(labels)} labels for {b} images; give one label per image")
    points = None
    if landmarks is not None:
        points = torch.as_tensor(landmarks).detach().to("cpu", torch.float64).numpy()
        if points.ndim != 3 or points.shape[0] != b or points.shape[2] != 2:
            raise DataError(f"landmarks must have shape {b}×N×2 to match the images, got {points.shape}")
    nrow = max(1, min(b, nrow if nrow else math.ceil(math.sqrt(b))))
    nrows = math.ceil(b / nrow)
    th, tw = h * scale, w * scale
    font = ImageFont.load_default()
    band = font.getbbox("Ag")[3] + 4 if labels is not None else 0

    canvas = Image.new("RGB", (nrow * tw + (nrow + 1) * pad, nrows * (th + band) + (nrows + 1) * pad))
    draw = ImageDraw.Draw(canvas)
    radius = max(1, min(th, tw) // 64)
    for i in range(b):
        x0 = pad + (i % nrow) * (tw + pad)
        y0 = pad + (i // nrow) * (th + band + pad)
        tile = np.repeat(np.repeat(tiles[i], scale, axis=0), scale, axis=1)
        canvas.paste(Image.fromarray(tile), (x0, y0))
        if points is not None:
            for (px, py), colour in zip(points[i], _dot_colours(points.shape[1])):
                if not (0 <= px <= 1 and 0 <= py <= 1):
                    continue  # NaN or off-image points would spill onto the neighbouring tiles
                cx, cy = x0 + min(int(px * tw), tw - 1), y0 + min(int(py * th), th - 1)
                draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
        if labels is not None:
            text = str(labels[i])
            x = x0 + (tw - draw.textlength(text, font=font)) / 2
            draw.text((x, y0 + th + 2), text, fill=(255, 255, 255), font=font)
    return canvas


def save_grid(images, path, **kw) -> Path:
    """Write :func:`image_grid` ``(images, **kw)`` to ``path`` as a PNG, atomically; returns the path."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    return atomic_save_png(image_grid(images, **kw), path)
