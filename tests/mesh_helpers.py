"""Small meshes made in the tests (until the mesh world is the data source): a triangulated grid
(open, consistently oriented) and an icosphere (closed)."""

from __future__ import annotations

import numpy as np


def grid_mesh(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """An n x n vertex grid in the unit square, two counter-clockwise triangles per cell."""
    x, y = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    vertices = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], 1).astype(np.float32)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [(a, b, d), (a, d, c)]
    return vertices, np.array(faces, dtype=np.int64)


def icosphere(subdivisions: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The unit icosahedron split ``subdivisions`` times (each triangle into four), outward-oriented."""
    t = (1 + 5 ** 0.5) / 2
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
         (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    vertices = [np.array(p, dtype=np.float64) / np.linalg.norm(p) for p in v]
    for _ in range(subdivisions):
        middle, split = {}, []

        def mid(a, b):
            key = (min(a, b), max(a, b))
            if key not in middle:
                p = vertices[a] + vertices[b]
                vertices.append(p / np.linalg.norm(p))
                middle[key] = len(vertices) - 1
            return middle[key]

        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            split += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = split
    return np.array(vertices, dtype=np.float32), np.array(faces, dtype=np.int64)


def standin_sequences(template, n_subjects: int = 6, n_motions: int = 4, frames: int = 10, seed: int = 0) -> dict:
    """Mesh sequences on ``template`` with planted structure, as one batch dict of the
    ``mesh_sequences`` keys: identities are smooth random bumps on the template (mm); each motion
    is a few Gaussian displacement fields ramped 0 -> apex -> 0 whose amplitude at a vertex scales
    with the identity's own bump height there (so dM depends on M, not only on dL)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    rest = template.vertices
    span = rest.std(0)

    def bumps(n, k, width):
        centres = rest[torch.randint(len(rest), (n, k), generator=g)]  # n, k, 3
        d2 = ((rest[None, None] - centres[:, :, None]) ** 2 / span ** 2).sum(-1)
        return torch.exp(-d2 / (2 * width ** 2))  # n, k, V

    height = (bumps(n_subjects, 4, 0.35) * torch.randn(n_subjects, 4, 1, generator=g)).sum(1)  # n, V
    neutral = rest + 6.0 * height[..., None] * torch.tensor([0.0, 0.0, 1.0])
    fields = bumps(n_motions, 3, 0.3)  # m, 3, V
    directions = torch.randn(n_motions, 3, 3, generator=g) * 4.0
    motion = torch.einsum("mkv,mkc->mvc", fields, directions)  # m, V, 3
    profile = torch.sin(torch.linspace(0, torch.pi, frames))  # neutral -> apex -> neutral
    gain = 1 + 0.8 * torch.tanh(height)  # s, V
    dm = profile[None, None, :, None, None] * gain[:, None, None, :, None] * motion[None, :, None]
    meshes = (neutral[:, None, None] + dm).reshape(-1, frames, len(rest), 3)
    neutrals = neutral[:, None].expand(-1, n_motions, -1, -1).reshape(-1, len(rest), 3)
    return {"mesh": meshes, "neutral": neutrals, "landmarks": template.landmarks(meshes),
            "neutral_landmarks": template.landmarks(neutrals),
            "subject": torch.arange(n_subjects).repeat_interleave(n_motions),
            "motion": torch.arange(n_motions).repeat(n_subjects)}
