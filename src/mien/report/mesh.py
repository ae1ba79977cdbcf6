"""Pictures of meshes: a shaded z-buffer rasteriser (numpy, orthographic, Gouraud-interpolated
Lambert shading), PNG grids, GIF animations and per-vertex error heat maps with a colour bar.

All meshes of one picture share one frame (centre and scale from the first mesh, or given), so
motion and shape differences stay visible across tiles and frames.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from mien.data.world.mesh_fields import vertex_normals
from mien.errors import DataError
from mien.io import atomic_save_png, ensure_writable_dir

LIGHT = np.array([-0.35, 0.45, 1.0]) / np.linalg.norm([-0.35, 0.45, 1.0])  # from the front, upper left
SKIN = (0.85, 0.72, 0.62)
AMBIENT = 0.25
# a perceptually ordered ramp (viridis anchors): low errors dark blue, high errors yellow
_RAMP = np.array([[0.267, 0.005, 0.329], [0.230, 0.322, 0.546], [0.128, 0.567, 0.551],
                  [0.369, 0.789, 0.383], [0.993, 0.906, 0.144]])


def colormap(values: np.ndarray, vmax: float) -> np.ndarray:
    """(N,) values in [0, vmax] -> (N, 3) RGB in [0, 1] on the ramp."""
    t = np.clip(np.asarray(values, dtype=np.float64) / max(vmax, 1e-12), 0, 1) * (len(_RAMP) - 1)
    lo = np.minimum(t.astype(int), len(_RAMP) - 2)
    return _RAMP[lo] + (t - lo)[:, None] * (_RAMP[lo + 1] - _RAMP[lo])


def _yaw(vertices: np.ndarray, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    r = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    return vertices @ r.T


def frame_of(vertices, margin: float = 0.06) -> tuple[np.ndarray, float]:
    """(centre (3,), half-extent) framing a mesh (V x 3) in a square picture."""
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(0), v.max(0)
    with np.errstate(over="ignore"):
        centre, half = (lo + hi) / 2, float((hi - lo)[:2].max()) * (0.5 + margin)
    if not (np.isfinite(centre).all() and math.isfinite(half) and half > 0):
        raise DataError(f"a mesh spanning {lo[:2]} to {hi[:2]} cannot be framed; give finite coordinates "
                        "of a mesh that is not flat in x and y (e.g. sample with --clip-x0)")
    return centre, half


def rasterise(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray, size: int,
              frame: tuple[np.ndarray, float], background=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(size, size, 3) picture in [0, 1]: every pixel centre covered by a triangle takes the
    barycentric mix of its corners' colours from the triangle nearest the camera (+z). Triangles
    wholly off the picture, or with coordinates that overflow in the frame, are skipped (a mesh
    with far-away vertices, e.g. an unclipped sample, draws what lies in the frame)."""
    centre, half = frame
    with np.errstate(over="ignore", invalid="ignore"):
        p = (vertices - centre) / half  # [-1, 1] in x and y
        px, py, depth = (p[:, 0] + 1) * size / 2, (1 - p[:, 1]) * size / 2, p[:, 2]
    tri = np.asarray(faces).reshape(-1, 3)
    x, y = px[tri], py[tri]  # F x 3
    keep = (np.isfinite(x).all(1) & np.isfinite(y).all(1) & np.isfinite(depth[tri]).all(1)
            & (x.max(1) >= 0) & (x.min(1) <= size) & (y.max(1) >= 0) & (y.min(1) <= size))
    tri, x, y = tri[keep], x[keep], y[keep]
    image = np.tile(np.asarray(background, dtype=np.float64), (size * size, 1))
    if not len(tri):
        return image.reshape(size, size, 3)
    x0, x1 = np.clip(np.floor(x.min(1) - 0.5), 0, size - 1).astype(int), np.clip(np.ceil(x.max(1) - 0.5), 0, size - 1).astype(int)
    y0, y1 = np.clip(np.floor(y.min(1) - 0.5), 0, size - 1).astype(int), np.clip(np.ceil(y.max(1) - 0.5), 0, size - 1).astype(int)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    count = w * h
    fid = np.repeat(np.arange(len(tri)), count)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    cx, cy = x0[fid] + local % w[fid] + 0.5, y0[fid] + local // w[fid] + 0.5
    xa, ya = x[fid], y[fid]
    with np.errstate(over="ignore", invalid="ignore"):  # overflowing (far) triangles fall out as NaN
        det = (xa[:, 1] - xa[:, 0]) * (ya[:, 2] - ya[:, 0]) - (xa[:, 2] - xa[:, 0]) * (ya[:, 1] - ya[:, 0])
        ok = np.isfinite(det) & (np.abs(det) > 1e-12)
        det = np.where(ok, det, 1.0)
        l1 = ((cx - xa[:, 0]) * (ya[:, 2] - ya[:, 0]) - (xa[:, 2] - xa[:, 0]) * (cy - ya[:, 0])) / det
        l2 = ((xa[:, 1] - xa[:, 0]) * (cy - ya[:, 0]) - (cx - xa[:, 0]) * (ya[:, 1] - ya[:, 0])) / det
        bary = np.stack([1 - l1 - l2, l1, l2], 1)
        inside = ok & np.isfinite(bary).all(1) & (bary.min(1) >= -1e-9)
    fid, bary, pix = fid[inside], bary[inside], (cy[inside].astype(int) * size + cx[inside].astype(int))
    z = (depth[tri[fid]] * bary).sum(1)
    order = np.lexsort((-z, pix))  # per pixel, nearest first
    pix, fid, bary = pix[order], fid[order], bary[order]
    first = np.r_[True, pix[1:] != pix[:-1]][:len(pix)]
    image[pix[first]] = np.einsum("pk,pkc->pc", bary[first], colours[tri[fid[first]]])
    return image.reshape(size, size, 3)


def render_mesh(vertices, faces, size: int = 160, colours=None, frame=None, yaw: float = 0.0) -> np.ndarray:
    """A shaded picture (size x size x 3 uint8) of one mesh (V x 3); ``colours`` (V x 3, [0, 1])
    default to skin; Lambert shading |n . l| with the light from the upper left front."""
    v = np.asarray(torch.as_tensor(vertices, dtype=torch.float64))
    if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
        raise DataError(f"a mesh to draw must be V x 3 finite vertices, got shape {v.shape}")
    frame = frame or frame_of(v)
    v = _yaw(v - frame[0], yaw) + frame[0]
    n = vertex_normals(torch.as_tensor(v), np.asarray(faces)).numpy()
    shade = AMBIENT + (1 - AMBIENT) * np.abs(n @ LIGHT)
    base = np.broadcast_to(np.asarray(SKIN if colours is None else colours, dtype=np.float64), v.shape)
    return (rasterise(v, faces, base * shade[:, None], size, frame) * 255).round().astype(np.uint8)


def _tile_grid(tiles: list[np.ndarray], nrow: int, labels=None, pad: int = 2) -> Image.Image:
    h, w = tiles[0].shape[:2]
    font = ImageFont.load_default()
    band = font.getbbox("Ag")[3] + 4 if labels else 0
    rows = math.ceil(len(tiles) / nrow)
    canvas = Image.new("RGB", (nrow * w + (nrow + 1) * pad, rows * (h + band) + (rows + 1) * pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, t in enumerate(tiles):
        x0, y0 = pad + (i % nrow) * (w + pad), pad + (i // nrow) * (h + band + pad)
        canvas.paste(Image.fromarray(t), (x0, y0))
        if labels:
            text = str(labels[i])
            draw.text((x0 + (w - draw.textlength(text, font=font)) / 2, y0 + h + 2), text, fill=(0, 0, 0), font=font)
    return canvas


def mesh_grid(meshes, faces, nrow: int | None = None, size: int = 160, labels=None, yaw: float = 0.0,
              colours=None) -> Image.Image:
    """Tiles of meshes (B x V x 3) in one frame, optionally captioned and coloured (B x V x 3)."""
    m = np.asarray(torch.as_tensor(meshes, dtype=torch.float64))
    if m.ndim != 3 or len(m) == 0:
        raise DataError(f"meshes to draw must be B x V x 3, got shape {m.shape}")
    if labels is not None and len(labels) != len(m):
        raise DataError(f"got {len(labels)} labels for {len(m)} meshes; give one label per mesh")
    frame = frame_of(m[0])
    tiles = [render_mesh(v, faces, size, None if colours is None else colours[i], frame, yaw) for i, v in enumerate(m)]
    return _tile_grid(tiles, max(1, min(len(m), nrow or math.ceil(math.sqrt(len(m))))), labels)


def save_mesh_grid(meshes, faces, path, **kw) -> Path:
    """Write :func:`mesh_grid` to ``path`` as a PNG, atomically; returns the path."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    return atomic_save_png(mesh_grid(meshes, faces, **kw), path)


def save_mesh_animation(frames, faces, path, size: int = 160, fps: int = 12, yaw: float = 0.0) -> Path:
    """Write a mesh sequence (T x V x 3), or N sequences side by side (N x T x V x 3), as a GIF (or
    MP4 with the video extra), all framed on the first frame of the first sequence."""
    from mien.data.world.sequences import save_animation

    seq = np.asarray(torch.as_tensor(frames, dtype=torch.float64))
    seq = seq[None] if seq.ndim == 3 else seq
    if seq.ndim != 4 or seq.shape[1] == 0 or seq.shape[-1] != 3:
        raise DataError(f"a mesh sequence must be T x V x 3 (or N x T x V x 3), got shape {seq.shape}")
    path = Path(path)
    ensure_writable_dir(path.parent)
    frame = frame_of(seq[0, 0])
    pics = np.stack([np.concatenate([render_mesh(s[t], faces, size, frame=frame, yaw=yaw) for s in seq], 1)
                     for t in range(seq.shape[1])])
    save_animation(torch.from_numpy(pics).permute(0, 3, 1, 2).float() / 127.5 - 1, path, fps=fps)
    return path


def colour_bar(vmax: float, height: int, width: int = 14, unit: str = "mm") -> Image.Image:
    """A vertical bar from 0 (bottom) to vmax (top) with its end labels."""
    font = ImageFont.load_default()
    ramp = colormap(np.linspace(vmax, 0, height), vmax)
    bar = (np.repeat(ramp[:, None], width, 1) * 255).astype(np.uint8)
    label_w = int(max(font.getlength(f"{vmax:.2f} {unit}"), font.getlength(f"0 {unit}"))) + 6
    img = Image.new("RGB", (width + label_w, height), (255, 255, 255))
    img.paste(Image.fromarray(bar), (0, 0))
    draw = ImageDraw.Draw(img)
    draw.text((width + 3, 0), f"{vmax:.2f} {unit}", fill=(0, 0, 0), font=font)
    draw.text((width + 3, height - font.getbbox("Ag")[3] - 1), f"0 {unit}", fill=(0, 0, 0), font=font)
    return img


def error_heatmaps(meshes, errors, faces, labels=None, vmax: float | None = None, size: int = 160,
                   nrow: int | None = None) -> Image.Image:
    """Meshes (B x V x 3) coloured by per-vertex errors (B x V, mm) on one scale (vmax: the largest
    error by default), with a colour bar on the right."""
    e = np.asarray(torch.as_tensor(errors, dtype=torch.float64))
    m = np.asarray(torch.as_tensor(meshes, dtype=torch.float64))
    if e.shape != m.shape[:2]:
        raise DataError(f"errors {e.shape} must give one value per vertex of the meshes {m.shape[:2]}")
    vmax = float(vmax if vmax is not None else max(e.max(), 1e-9))
    colours = np.stack([colormap(row, vmax) for row in e])
    grid = mesh_grid(m, faces, nrow=nrow, size=size, labels=labels, colours=colours)
    bar = colour_bar(vmax, grid.height - 8)
    out = Image.new("RGB", (grid.width + bar.width + 6, grid.height), (255, 255, 255))
    out.paste(grid, (0, 0))
    out.paste(bar, (grid.width + 3, 4))
    return out


def save_error_heatmaps(meshes, errors, faces, path, **kw) -> Path:
    """Write :func:`error_heatmaps` to ``path`` as a PNG, atomically; returns the path."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    return atomic_save_png(error_heatmaps(meshes, errors, faces, **kw), path)
