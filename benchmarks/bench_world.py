"""Faces per second: the world on the fly and from its render cache against decoding the same
faces from PNGs.

All sides produce the same thing, a float tensor batch of faces in [-1, 1]; the PNG side reads
files that `export_samples` wrote (Pillow decode + numpy conversion), the world side renders
them with `WorldDataset.batch`, the cached side reads them from the render cache
(`WorldDataset(cache=True)`, built once in a temp `MIEN_CACHE`; its build time is reported).
Each measurement is the median of several runs; the result is printed as JSON.
Run: python benchmarks/bench_world.py [--n 2048] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mien.data.folder import export_samples
from mien.data.world import WorldDataset
from mien.train.data import ResumableLoader, StepBatchSampler


def median_rate(fn, n: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n / statistics.median(times)


def render_all(ds: WorldDataset, batch: int):
    for start in range(0, len(ds), batch):
        ds.batch(range(start, min(start + batch, len(ds))))


def decode_all(files: list[Path], batch: int):
    for start in range(0, len(files), batch):
        arrays = [np.asarray(Image.open(p).convert("RGB")) for p in files[start:start + batch]]
        torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def loader_rate(ds, batch: int, workers: int, repeats: int) -> float:
    """On-the-fly rendering through the training engine's loader, one worker per core (PyTorch
    runs each worker single-threaded)."""
    loader = ResumableLoader(ds, StepBatchSampler(len(ds), batch, seed=0), num_workers=workers)
    return median_rate(lambda: [None for _ in loader], len(ds), repeats)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {"threads": torch.get_num_threads(), "n": args.n, "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MIEN_CACHE"] = str(Path(tmp) / "cache")
        for size in (64, 128):
            ds = WorldDataset(args.n, size, seed=0)
            out = export_samples(ds.samples(), ds.factors, Path(tmp) / str(size), progress=False)
            files = sorted((out / "images").glob("*.png"))
            t = time.perf_counter()
            cached = WorldDataset(args.n, size, seed=0, cache=True, progress=False)
            build = time.perf_counter() - t
            render = median_rate(lambda: render_all(ds, args.batch), args.n, args.repeats)
            loader = loader_rate(ds, args.batch, 2, args.repeats)
            cache = median_rate(lambda: render_all(cached, args.batch), args.n, args.repeats)
            cache_loader = loader_rate(cached, args.batch, 2, args.repeats)
            decode = median_rate(lambda: decode_all(files, args.batch), args.n, args.repeats)
            results[f"{size}px"] = {
                "render_faces_per_s": round(render), "render_loader_2workers_faces_per_s": round(loader),
                "cache_build_s": round(build, 2), "cache_faces_per_s": round(cache),
                "cache_loader_2workers_faces_per_s": round(cache_loader),
                "png_decode_faces_per_s": round(decode),
                "ratio_render_vs_png": round(render / decode, 3),
                "ratio_loader_vs_png": round(loader / decode, 3),
                "ratio_cache_vs_png": round(cache / decode, 3),
                "ratio_cache_loader_vs_png": round(cache_loader / decode, 3),
            }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
