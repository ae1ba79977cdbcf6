"""Triangle meshes on disk: ``.ply`` and ``.obj`` through trimesh (vertex order kept, no
merging or reordering), with the checks a training set needs: finite coordinates, at least one
triangle, indices in range, an edge-manifold and consistently oriented surface.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mien.errors import DataError
from mien.io import atomic_write_bytes, ensure_writable_dir

MESH_SUFFIXES = (".ply", ".obj")


def check_mesh(vertices: np.ndarray, faces: np.ndarray, name: str = "mesh") -> None:
    """Raise DataError (one line) unless the mesh is V x 3 finite, F x 3 in range, every edge in at
    most two triangles, and no directed edge twice (consistent orientation)."""
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise DataError(f"{name} has no vertices (shape {vertices.shape}); give a triangle mesh with V x 3 vertices")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise DataError(f"{name} has no triangles; give a triangle mesh (faces F x 3)")
    if not np.isfinite(vertices).all():
        raise DataError(f"{name} has NaN or infinite coordinates; fix or drop the file")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise DataError(f"{name} has triangle indices outside 0..{len(vertices) - 1}; the file is corrupt")
    if (faces[:, 0] == faces[:, 1]).any() or (faces[:, 1] == faces[:, 2]).any() or (faces[:, 0] == faces[:, 2]).any():
        raise DataError(f"{name} has degenerate triangles (a repeated vertex); clean the mesh")
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    key = directed[:, 0] * len(vertices) + directed[:, 1]
    if len(np.unique(key)) != len(key):
        raise DataError(f"{name} is non-manifold or inconsistently oriented (a directed edge in two triangles); "
                        "repair it (e.g. trimesh.repair.fix_winding) or drop it")
    undirected = np.sort(directed, 1)
    _, count = np.unique(undirected[:, 0] * len(vertices) + undirected[:, 1], return_counts=True)
    if count.max() > 2:
        raise DataError(f"{name} is non-manifold: an edge is shared by {count.max()} triangles; repair or drop it")


def read_mesh(path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices V x 3 float32, faces F x 3 int64) of a ``.ply`` or ``.obj`` file, checked."""
    import trimesh

    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise DataError(f"{path}: meshes are read from .ply or .obj files")
    if not path.is_file():
        raise DataError(f"mesh file {path} does not exist; check the path")
    if path.stat().st_size == 0:
        raise DataError(f"mesh file {path} is empty; re-export it or drop it")
    try:
        mesh = trimesh.load(path, process=False, force="mesh")
    except Exception as e:  # trimesh raises many types for unreadable files
        raise DataError(f"cannot read mesh {path} ({type(e).__name__}: {e}); is it a valid {path.suffix} file?") from None
    vertices = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    check_mesh(vertices.reshape(-1, 3) if vertices.size else np.zeros((0, 3)), faces, str(path))
    return vertices.astype(np.float32), faces


def write_mesh(path, vertices, faces) -> Path:
    """Write a mesh as ``.ply`` (binary) or ``.obj``, atomically; returns the path."""
    import trimesh

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise DataError(f"{path}: meshes are written as .ply or .obj")
    v, f = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    check_mesh(v, f, str(path))
    ensure_writable_dir(path.parent)
    buffer = io.BytesIO()
    trimesh.Trimesh(v, f, process=False).export(buffer, file_type=suffix[1:])
    return atomic_write_bytes(path, buffer.getvalue())
