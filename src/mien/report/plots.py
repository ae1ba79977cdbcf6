"""Line plots as PNGs (PIL only): metric sweeps such as accuracy against the fraction of missing data."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mien.io import atomic_save_png, ensure_writable_dir

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def line_plot(x: list[float], series: dict[str, list[float]], xlabel: str, ylabel: str,
              ylim: tuple[float, float] | None = None, title: str = "", size: tuple[int, int] = (560, 380)) -> Image.Image:
    """One polyline with markers per named series over the shared ``x``, axes with ticks and a legend
    in the lower left corner."""
    font = ImageFont.load_default()
    w, h = size
    left, right, top, bottom = 58, 16, 28, 44
    values = [v for ys in series.values() for v in ys]
    lo, hi = ylim if ylim is not None else (min(values), max(values))
    hi = hi if hi > lo else lo + 1.0
    x0, x1 = min(x), max(x) if max(x) > min(x) else min(x) + 1.0
    px = lambda v: left + (v - x0) / (x1 - x0) * (w - left - right)  # noqa: E731
    py = lambda v: h - bottom - (v - lo) / (hi - lo) * (h - top - bottom)  # noqa: E731
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    for i in range(6):
        yv = lo + i * (hi - lo) / 5
        d.line([left - 4, py(yv), left, py(yv)], fill=(0, 0, 0))
        d.line([left + 1, py(yv), w - right - 1, py(yv)], fill=(230, 230, 230))
        d.text((4, py(yv) - 5), f"{yv:.2f}", fill=(0, 0, 0), font=font)
    for xv in x:
        d.line([px(xv), h - bottom, px(xv), h - bottom + 4], fill=(0, 0, 0))
        d.text((px(xv) - 8, h - bottom + 6), f"{xv:g}", fill=(0, 0, 0), font=font)
    d.text((left + (w - left - right) // 2 - 3 * len(xlabel), h - 16), xlabel, fill=(0, 0, 0), font=font)
    d.text((4, 8), ylabel, fill=(0, 0, 0), font=font)
    d.text((left + 120, 8), title, fill=(0, 0, 0), font=font)
    for k, (name, ys) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [(px(a), py(b)) for a, b in zip(x, ys)]
        d.line(points, fill=colour, width=2)
        for a, b in points:
            d.ellipse([a - 3, b - 3, a + 3, b + 3], fill=colour)
        ly = h - bottom - 14 * (len(series) - k) - 4  # legend: lower left
        d.line([left + 10, ly + 5, left + 30, ly + 5], fill=colour, width=2)
        d.text((left + 36, ly), name, fill=(0, 0, 0), font=font)
    return img


def save_line_plot(path, *args, **kw) -> Path:
    """Write :func:`line_plot` to ``path`` as a PNG, atomically; returns the path."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    return atomic_save_png(line_plot(*args, **kw), path)
