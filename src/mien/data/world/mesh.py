"""The mesh world: face meshes (mm) of the world's identities and expressions on one fixed,
consistently oriented triangulation with a nested hierarchy (Zou thesis §3.4.3, §3.7, ch. 4;
digest A.6, B.1, G).

A mesh is the spline image (mesh_surface.py) of the world's 3-D points (template + identity
modes + sex and age fields + expression field, geometry.py), so its barycentric landmarks equal
the image world's model-space landmarks for the same factors, plus mesh-only terms that vanish at
the landmarks (mesh_fields.py): smooth identity modes, a localised sex dimorphism, registration
noise on a low-dimorphism band, and expression bulges that depend on the identity's own surface.
Units: model units x MM_PER_UNIT; the frame is the world's canonical frontal frame (the world draws
no pose for meshes); :func:`procrustes` aligns meshes rigidly to the template (the DVAE data, thesis
§4.4, are aligned this way).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from mien.data.world import mesh_surface
from mien.errors import ConfigError

MM_PER_UNIT = 70.0  # the template face is about 2 units (140 mm) wide
MESH_SIZES = tuple(mesh_surface.GRID)


def sparse_matrix(rows, cols, vals, shape) -> torch.Tensor:
    """A coalesced sparse COO float32 matrix from (rows, cols, values)."""
    idx = torch.tensor(np.stack([rows, cols]), dtype=torch.long)
    return torch.sparse_coo_tensor(idx, torch.tensor(vals, dtype=torch.float32), shape,
                                   check_invariants=False).coalesce()  # our indices; no torch warning


@dataclass
class MeshHierarchy:
    """Nested triangulations, level 0 the finest: ``faces[l]`` (F_l x 3 int64, counter-clockwise
    seen from the front), ``n_vertices[l]``, ``down[l]`` sparse (V_{l+1} x V_l) and ``up[l]`` sparse
    (V_l x V_{l+1}) with down[l] @ up[l] = I for a nested hierarchy."""

    faces: list[np.ndarray]
    n_vertices: list[int]
    down: list[torch.Tensor]
    up: list[torch.Tensor]

    def fingerprint(self) -> str:
        """A stable hash of the topology and the sampling matrices (caches key on it)."""
        h = hashlib.sha1()
        for f in self.faces:
            h.update(np.ascontiguousarray(f, dtype=np.int64).tobytes())
        h.update(np.asarray(self.n_vertices, dtype=np.int64).tobytes())
        for m in self.down + self.up:
            m = m.coalesce()
            h.update(m.indices().numpy().tobytes())
            h.update(m.values().numpy().tobytes())
        return h.hexdigest()[:16]


@dataclass
class MeshTemplate:
    """A mesh topology with its rest shape: ``vertices`` (V x 3 float32, mm), ``hierarchy``, and the
    iBUG-68 landmarks as barycentric points (``landmark_faces`` (68,) into hierarchy.faces[0],
    ``landmark_bary`` (68 x 3))."""

    vertices: torch.Tensor
    hierarchy: MeshHierarchy
    landmark_faces: np.ndarray
    landmark_bary: torch.Tensor

    @property
    def faces(self) -> np.ndarray:
        return self.hierarchy.faces[0]

    @property
    def n_vertices(self) -> int:
        return self.hierarchy.n_vertices[0]

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """Barycentric landmarks (... x 68 x 3) of meshes (... x V x 3) on this topology."""
        corners = torch.as_tensor(self.faces[self.landmark_faces])  # 68 x 3 vertex ids
        v = torch.as_tensor(vertices)
        return (v[..., corners, :] * self.landmark_bary.to(v.dtype)[..., None]).sum(-2)


@lru_cache(maxsize=None)
def world_surface(size: str) -> dict:
    """The cached mesh_surface.surface of a size, after checking the size name."""
    if size not in MESH_SIZES:
        raise ConfigError(f"unknown mesh size {size!r}; choose {' or '.join(MESH_SIZES)}")
    return mesh_surface.surface(size)


@lru_cache(maxsize=None)
def mesh_template(size: str = "small") -> MeshTemplate:
    """The world's face mesh template: 'small' (625 vertices, levels 625/169/49/16) for CPU runs,
    'paper' (5,329 vertices, levels 5329/1369/361/100) for paper-scale runs."""
    from mien.data.world import geometry as geo

    s = world_surface(size)
    sizes = [n * n for n in s["sides"]]
    down = [sparse_matrix(*d, (sizes[l + 1], sizes[l])) for l, (d, _) in enumerate(s["down_up"])]
    up = [sparse_matrix(*u, (sizes[l], sizes[l + 1])) for l, (_, u) in enumerate(s["down_up"])]
    hierarchy = MeshHierarchy(faces=s["faces"], n_vertices=sizes, down=down, up=up)
    rest = s["from_control"] @ geo.TEMPLATE[mesh_surface.CONTROL] + s["from_ring"]
    return MeshTemplate(vertices=torch.tensor(rest * MM_PER_UNIT, dtype=torch.float32), hierarchy=hierarchy,
                        landmark_faces=s["landmark_faces"],
                        landmark_bary=torch.tensor(s["landmark_bary"], dtype=torch.float32))


@lru_cache(maxsize=None)
def operators(size: str) -> dict[str, torch.Tensor]:
    """The surface's linear maps as float32 tensors: ``from_control``, ``from_ring``, ``bary_pinv``."""
    s = world_surface(size)
    return {k: torch.tensor(s[k], dtype=torch.float32) for k in ("from_control", "from_ring", "bary_pinv")}


def points_to_mesh(points: torch.Tensor, size: str = "small", ring: bool = True) -> torch.Tensor:
    """Meshes (... x V x 3, mm) spanned by world points (... x N_POINTS x 3, model units): exact at
    the landmarks, with landmarks(mesh) = points[..., :68] * MM_PER_UNIT. ``ring=False`` maps a
    displacement of the points (the base surface does not move)."""
    ops = operators(size)
    out = ops["from_control"] @ points[..., mesh_surface.CONTROL, :].float()
    return (out + ops["from_ring"] if ring else out) * MM_PER_UNIT


def procrustes(meshes: torch.Tensor, reference: torch.Tensor, scale: bool = False) -> torch.Tensor:
    """Meshes (B x V x 3) moved onto ``reference`` (V x 3) by the least-squares rotation and
    translation (and isotropic scale with ``scale=True``): orthogonal Procrustes by SVD (Kabsch),
    reflections excluded."""
    mu_x, mu_r = meshes.mean(-2, keepdim=True), reference.mean(-2, keepdim=True)
    x, r = meshes - mu_x, reference - mu_r
    u, sv, vt = torch.linalg.svd(x.transpose(-1, -2) @ r)
    d = torch.sign(torch.linalg.det(u @ vt))
    flip = torch.ones_like(sv)
    flip[..., -1] = d
    rot = u @ torch.diag_embed(flip) @ vt  # x @ rot best matches r
    s = (sv * flip).sum(-1) / (x ** 2).sum((-1, -2)) if scale else torch.ones(meshes.shape[:-2])
    return s[..., None, None] * (x @ rot) + mu_r
