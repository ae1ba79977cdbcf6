"""The render cache of finite world data sets: every face rendered once into uint8 memory-mapped
arrays that every epoch and every DataLoader worker (and every DDP process) reads.

Images are stored as an export stores them (:func:`quantise`, the rounding of ``mien data synth``'s
PNGs) and read back by :func:`dequantise`, the arithmetic :class:`~mien.data.folder.FolderDataset`
applies to decoded PNGs: a cached face is bit-identical to the same face rendered, quantised and
dequantised, and to the same face exported and read from its folder. Landmarks are stored as the
renderer's float32 values (identical). Factors are not stored: drawing them is ~100x cheaper than
reading an image.

The cache lives in ``$MIEN_CACHE/world`` (default ``~/.cache/mien/world``), one folder per
:func:`fingerprint` (image size, number of faces, every drawn factor value, the renderer's source
and torch's version), so a change to any of them renders anew and nothing stale is read. It is
built under an exclusive ``flock`` (a second process waits, then reads; a killed builder releases
it) into a temp folder renamed into place when complete; removing the folder is always safe.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mien.data.world import geometry, render, sdf
from mien.errors import DataError, OutputError
from mien.io import cache_dir, ensure_writable_dir

CHUNK = 256  # faces rendered per call while building
N_LANDMARKS = geometry.N_LANDMARKS
_FIX = "set MIEN_CACHE to a writable folder with room, or data.cache=false to render on the fly"


def cache_root() -> Path:
    """``$MIEN_CACHE/world``, or ``~/.cache/mien/world``."""
    return cache_dir("world")


def quantise(image: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] to uint8, rounded as an export writes its PNGs."""
    return ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def dequantise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float32 in [-1, 1], as a folder data set reads a PNG (x / 127.5 - 1)."""
    return pixels.float() / 127.5 - 1.0


def _renderer_version() -> str:
    """A hash of the renderer's source: editing the renderer invalidates every cache."""
    text = "".join(inspect.getsource(m) for m in (geometry, sdf, render)) + torch.__version__
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(draw: Callable, n: int, size: int) -> str:
    """Hash of what decides the pixels: size, n, the renderer and every factor value of the n faces
    (``draw(indices)`` -> factor name -> tensor), so a change of design, seed, fixed values or ranges counts."""
    h = hashlib.sha256(f"{n}:{size}:{_renderer_version()}".encode())
    for start in range(0, n, 65536):
        f = draw(np.arange(start, min(start + 65536, n)))
        for name in sorted(f):
            h.update(name.encode())
            h.update(f[name].contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class _Layout:
    """The three arrays of a cache folder: file name, dtype and shape of each."""

    n: int
    size: int

    def arrays(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        return {"image": (np.dtype(np.uint8), (self.n, 3, self.size, self.size)),
                "landmarks2d": (np.dtype(np.float32), (self.n, N_LANDMARKS, 2)),
                "landmarks3d": (np.dtype(np.float32), (self.n, N_LANDMARKS, 3))}

    def nbytes(self) -> int:
        return sum(d.itemsize * int(np.prod(s)) for d, s in self.arrays().values())


class RenderCache:
    """The cached images and landmarks of ``n`` faces of ``size`` pixels, in ``folder``.

    Open one with :meth:`open` (builds it when missing). The arrays are memory-mapped lazily in
    each process; pickling (DataLoader workers, spawn) carries only the folder."""

    def __init__(self, folder: Path, n: int, size: int):
        self.folder, self.layout = Path(folder), _Layout(n, size)
        self._maps: dict[str, np.memmap] | None = None

    @classmethod
    def open(cls, draw: Callable, render_chunk: Callable, n: int, size: int, progress: bool = True) -> RenderCache:
        """The cache of the faces ``draw`` describes, built with ``render_chunk(indices) -> (image,
        landmarks2d, landmarks3d)`` if no complete one exists."""
        root = cache_root()
        key = fingerprint(draw, n, size)
        cache = cls(root / key, n, size)
        if not (cache.folder / "meta.json").is_file():
            try:
                ensure_writable_dir(root)
            except OutputError:
                raise OutputError(f"cannot write the world render cache in {root}; {_FIX}") from None
            with _claim(root / f"{key}.lock"):
                if not (cache.folder / "meta.json").is_file():  # another process may have built it meanwhile
                    cache._build(render_chunk, key, progress)
        cache._check()
        return cache

    def _build(self, render_chunk: Callable, key: str, progress: bool) -> None:
        """Render every face into a temp folder, sync it, rename it into place (under the claim)."""
        root = self.folder.parent
        for stale in root.glob(f".{key}.*.tmp"):  # left by a killed builder (we hold the claim)
            shutil.rmtree(stale, ignore_errors=True)
        need, free = self.layout.nbytes(), shutil.disk_usage(root).free
        if need > free:
            raise OutputError(f"the world render cache needs {need / 2**20:.1f} MiB in {root} and "
                              f"{free / 2**20:.1f} MiB are free; {_FIX}")
        tmp = root / f".{key}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir()
        try:
            maps = {name: np.lib.format.open_memmap(tmp / f"{name}.npy", "w+", dtype, shape)
                    for name, (dtype, shape) in self.layout.arrays().items()}
            _render_into(maps, render_chunk, self.layout.n, progress)
            for m in maps.values():
                m.flush()
            del maps
            meta = {"n": self.layout.n, "size": self.layout.size, "fingerprint": key}
            (tmp / "meta.json").write_text(json.dumps(meta))
            for p in tmp.iterdir():
                with p.open("rb") as f:
                    os.fsync(f.fileno())
            os.rename(tmp, self.folder)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError):
                raise OutputError(f"cannot write the world render cache in {root} ({e.strerror or e}); {_FIX}") from None
            raise

    def _check(self) -> None:
        """A cache folder whose arrays do not have the expected shapes is damaged: say so."""
        for name, (dtype, shape) in self.layout.arrays().items():
            m = self.maps[name]
            if m.dtype != dtype or m.shape != shape:
                raise DataError(f"the world render cache {self.folder} is damaged ({name} is {m.dtype} "
                                f"{m.shape}, expected {dtype} {shape}); delete that folder (it is rebuilt)")

    @property
    def maps(self) -> dict[str, np.memmap]:
        if self._maps is None:
            try:
                self._maps = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r")
                              for name in self.layout.arrays()}
            except (OSError, ValueError) as e:
                raise DataError(f"the world render cache {self.folder} is damaged ({e}); "
                                "delete that folder (it is rebuilt)") from None
        return self._maps

    def read(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (float32 in [-1, 1], :func:`dequantise`), landmarks2d and landmarks3d of ``indices``."""
        image, lm2, lm3 = (torch.from_numpy(self.maps[k][indices]) for k in ("image", "landmarks2d", "landmarks3d"))
        return dequantise(image), lm2, lm3

    def __getstate__(self):
        return {**self.__dict__, "_maps": None}


def _render_into(maps: dict, render_chunk: Callable, n: int, progress: bool) -> None:
    from mien.data.folder import progress_bar

    with progress_bar(progress) as bar:
        task = bar.add_task("rendering the world cache", total=n)
        for start in range(0, n, CHUNK):
            idx = np.arange(start, min(start + CHUNK, n))
            image, lm2, lm3 = render_chunk(idx)
            maps["image"][idx] = quantise(image).numpy()
            maps["landmarks2d"][idx] = lm2.numpy()
            maps["landmarks3d"][idx] = lm3.numpy()
            bar.advance(task, len(idx))


class _claim:
    """An exclusive ``flock`` on ``path``: one builder at a time; released if the holder dies."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o666)
        except OSError as e:
            raise OutputError(f"cannot claim the world render cache {self.path} ({e.strerror}); {_FIX}") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
