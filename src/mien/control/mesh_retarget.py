"""Z1 + Z2 (Zou thesis §3.4.3, second paragraph): landmark sequences of the expression diffusion
model retargeted to a neutral face mesh M by the landmark-guided mesh decoder. The landmarks L_M of
M are extracted (the mesh's barycentric iBUG-68 points), the diffusion model generates sequences
from them (geometry-adaptive, Alg. 4), and each frame becomes M_f = M + dM_f with dL_f = L_f - L_M.

Units: the world's landmark sequences are in model units, meshes in mm
(``mien.data.world.mesh.MM_PER_UNIT`` mm per unit, the mesh world's frame).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mien.data.world.mesh import MM_PER_UNIT, mesh_template
from mien.errors import DataError


def neutral_for(decoder, vertices: np.ndarray, faces: np.ndarray, name: str = "the neutral mesh") -> torch.Tensor:
    """The mesh's vertices (V x 3, mm) after checking it has the decoder's triangulation."""
    own = decoder.faces
    if vertices.shape[0] != decoder.n_vertices or faces.shape != own.shape or not np.array_equal(faces, own):
        raise DataError(f"{name} has {vertices.shape[0]} vertices and {len(faces)} triangles, not the decoder's "
                        f"{decoder.config.mesh_size} mesh topology ({decoder.n_vertices} vertices, {len(own)} "
                        "triangles); give a mesh on that topology (e.g. from mien data synth --meshes)")
    return torch.as_tensor(vertices, dtype=torch.float32)


def mesh_landmarks(decoder, neutral: torch.Tensor) -> torch.Tensor:
    """L_M in the diffusion model's units (68 x 3): the mesh's landmarks / MM_PER_UNIT."""
    return mesh_template(decoder.config.mesh_size).landmarks(neutral) / MM_PER_UNIT


def retarget(decoder, neutral: torch.Tensor, sequences: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Mesh sequences (n x T x V x 3, mm) of landmark sequences (n x T x 68 x 3, model units) on the
    neutral mesh (V x 3, mm), and the decoder's wall time per sequence in seconds."""
    reference = mesh_template(decoder.config.mesh_size).landmarks(neutral)
    delta = sequences.float() * MM_PER_UNIT - reference
    start = time.perf_counter()
    with torch.no_grad():
        meshes = decoder.deform(neutral.expand(len(sequences), -1, -1), delta)
    return meshes, (time.perf_counter() - start) / len(sequences)
