"""The pictures ``mien data show`` draws for mesh data: an overview of the mesh world (identities,
the same identities as either sex, expressions), an animation of CoMA-like sequences, or a grid of
the meshes of a real folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mien.data.world import geometry as geo
from mien.data.world.mesh import mesh_template
from mien.data.world.mesh_data import MeshSequenceDataset, subject_meshes
from mien.errors import ConfigError
from mien.report.mesh import save_mesh_animation, save_mesh_grid

OVERVIEW_EXPRESSIONS = ("happy", "sad", "surprise", "fear", "disgust", "anger")


def save_world_overview(path, seed: int = 0, size: str = "small", tile: int = 128) -> Path:
    """Three rows of six: six neutral identities; three identities as female then male (all else
    equal); one identity making six expressions at full intensity."""
    n = len(OVERVIEW_EXPRESSIONS)
    identities = subject_meshes(seed, range(n), 0, 0.0, size=size)
    pairs = [subject_meshes(seed, [s], 0, 0.0, sex=x, size=size)[0] for s in range(3) for x in (0, 1)]
    expressions = [subject_meshes(seed, [0], geo.EXPRESSIONS.index(e), 1.0, size=size)[0] for e in OVERVIEW_EXPRESSIONS]
    meshes = torch.cat([identities, torch.stack(pairs), torch.stack(expressions)])
    labels = ([f"identity {s}" for s in range(n)] + [f"id {s} {'male' if x else 'female'}" for s in range(3) for x in (0, 1)]
              + list(OVERVIEW_EXPRESSIONS))
    return save_mesh_grid(meshes, mesh_template(size).faces, path, nrow=n, size=tile, labels=labels)


def save_sequence_overview(path, n: int = 4, seed: int = 0, size: str = "small", tile: int = 128, fps: int = 12) -> Path:
    """An animation of subject 0 making its first ``n`` motions side by side, neutral-apex-neutral."""
    ds = MeshSequenceDataset(subjects=1, motions=min(n, 12), seed=seed, size=size)
    return save_mesh_animation(ds.batch(range(len(ds)))["mesh"], ds.template.faces, path, size=tile, fps=fps)


def show_meshes(source: str, path, n: int = 12, seed: int = 0) -> Path:
    """``meshes`` (PNG overview), ``mesh_sequences`` (GIF or MP4), or a mesh folder (PNG grid of its
    first n meshes)."""
    path = Path(path)
    animated = path.suffix.lower() in (".gif", ".mp4")
    if source == "meshes":
        if animated:
            raise ConfigError("the mesh world overview is a picture; give --out a .png name")
        return save_world_overview(path, seed)
    if source == "mesh_sequences":
        if not animated:
            raise ConfigError("mesh sequences are animations; give --out a .gif (or .mp4) name")
        return save_sequence_overview(path, n, seed)
    from mien.data.formats.coma import MeshFolder

    folder = MeshFolder(source)
    pick = np.linspace(0, len(folder.files) - 1, min(n, len(folder.files))).round().astype(int)
    labels = [folder.files[i].stem for i in pick]
    return save_mesh_grid(torch.from_numpy(folder.vertices[pick]), folder.faces, path, labels=labels)
