"""Mesh sequences on disk: one GIF per sequence and its frames as ``.ply`` files
(``sequence_000.gif``, ``sequence_000/frame_000.ply``, ...), the CoMA-like layout of a generation."""

from __future__ import annotations

from pathlib import Path

from mien.data.meshio import write_mesh
from mien.report.mesh import save_mesh_animation


def write_mesh_sequences(meshes, faces, out, size: int = 160) -> list[Path]:
    """Write each of the n x T x V x 3 sequences as an animation and T .ply frames; returns the GIFs."""
    out, gifs = Path(out), []
    for i, seq in enumerate(meshes):
        for t, frame in enumerate(seq):
            write_mesh(out / f"sequence_{i:03d}" / f"frame_{t:03d}.ply", frame.cpu().numpy(), faces)
        gifs.append(save_mesh_animation(seq.cpu(), faces, out / f"sequence_{i:03d}.gif", size=size))
    return gifs
