"""Hierarchies for real meshes that come without one: repeated quadric edge-collapse decimation
(fast-simplification, Garland-Heckbert QEM) by ``factor`` per level, as CoMA builds its pooling
levels, cached on disk under a fingerprint of the topology and the reference shape.

Sampling matrices follow CoMA (Ranjan et al. 2018, §3.2): ``down`` keeps, for every coarse
vertex, the nearest fine vertex; ``up`` places every fine vertex by the barycentric coordinates
of its projection onto the nearest coarse triangle. Departure: the nearest triangle is found by
centroid distance (then the projection is clipped into the triangle), not by an exact search.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mien.data.meshio import check_mesh
from mien.data.world.mesh import MeshHierarchy, sparse_matrix
from mien.errors import DataError
from mien.io import atomic_write_with, cache_dir, ensure_writable_dir


def hierarchy_dir() -> Path:
    """Where built hierarchies are kept: $MIEN_CACHE/mesh_hierarchies (default ~/.cache/mien)."""
    return cache_dir("mesh_hierarchies")


def _project_bary(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (P x 3) of points projected onto their triangles (P x 3 x 3), clipped."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    e1, e2, d = b - a, c - a, points - a
    g11, g12, g22 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
    r1, r2 = (d * e1).sum(1), (d * e2).sum(1)
    det = np.where(np.abs(g11 * g22 - g12 ** 2) > 1e-20, g11 * g22 - g12 ** 2, 1.0)
    l1, l2 = (g22 * r1 - g12 * r2) / det, (g11 * r2 - g12 * r1) / det
    bary = np.clip(np.stack([1 - l1 - l2, l1, l2], 1), 0, None)
    return bary / bary.sum(1, keepdims=True).clip(1e-12)


def sampling(fine: np.ndarray, coarse: np.ndarray, coarse_faces: np.ndarray):
    """COO triples (rows, cols, values) of CoMA's down (coarse x fine) and up (fine x coarse) matrices."""
    nearest = ((coarse[:, None] - fine[None]) ** 2).sum(-1).argmin(1)
    down = (np.arange(len(coarse)), nearest, np.ones(len(coarse)))
    centroids = coarse[coarse_faces].mean(1)
    tri = ((fine[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    bary = _project_bary(fine, coarse[coarse_faces[tri]])
    up = (np.repeat(np.arange(len(fine)), 3), coarse_faces[tri].ravel(), bary.ravel())
    return down, up


def fingerprint(vertices: np.ndarray, faces: np.ndarray, levels: int, factor: int) -> str:
    h = hashlib.sha1(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    h.update(np.round(np.asarray(vertices, dtype=np.float64), 4).tobytes())
    h.update(f"{levels}/{factor}".encode())
    return h.hexdigest()[:16]


def decimated_hierarchy(vertices, faces, levels: int = 4, factor: int = 4, cache: Path | None = None) -> MeshHierarchy:
    """A :class:`MeshHierarchy` of ``levels`` levels for a mesh, each about ``factor`` times coarser,
    read from the cache when this mesh was seen before."""
    v, f = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    check_mesh(v, f, "the reference mesh")
    path = (cache or hierarchy_dir()) / f"hierarchy_{fingerprint(v, f, levels, factor)}.npz"
    if path.is_file():
        return _load(path)
    import fast_simplification

    meshes, mats = [(v, f)], []
    for _ in range(levels - 1):
        pv, pf = meshes[-1]
        if len(pf) < 4 * factor:
            raise DataError(f"the mesh has too few triangles ({len(f)}) for {levels} levels; lower the number of levels")
        cv, cf = fast_simplification.simplify(pv, pf, target_reduction=1 - 1 / factor)
        meshes.append((np.asarray(cv, dtype=np.float64), np.asarray(cf, dtype=np.int64)))
        mats.append(sampling(pv, meshes[-1][0], meshes[-1][1]))
    arrays = {"n_vertices": np.array([len(m[0]) for m in meshes])}
    for l, (_, mf) in enumerate(meshes):
        arrays[f"faces{l}"] = mf
    for l, (down, up) in enumerate(mats):
        for name, (r, c, x) in (("down", down), ("up", up)):
            arrays[f"{name}{l}"] = np.stack([r, c]).astype(np.int64)
            arrays[f"{name}{l}_values"] = np.asarray(x, dtype=np.float32)
    ensure_writable_dir(path.parent)
    atomic_write_with(path, lambda fh: np.savez(fh, **arrays))
    return _load(path)


def _load(path: Path) -> MeshHierarchy:
    try:
        z = np.load(path)
        sizes = [int(n) for n in z["n_vertices"]]
        faces = [z[f"faces{l}"] for l in range(len(sizes))]
        down = [sparse_matrix(*z[f"down{l}"], z[f"down{l}_values"], (sizes[l + 1], sizes[l])) for l in range(len(sizes) - 1)]
        up = [sparse_matrix(*z[f"up{l}"], z[f"up{l}_values"], (sizes[l], sizes[l + 1])) for l in range(len(sizes) - 1)]
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"the cached mesh hierarchy {path} is unreadable ({e}); delete it to rebuild") from None
    return MeshHierarchy(faces=faces, n_vertices=sizes, down=down, up=up)
