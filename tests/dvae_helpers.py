"""A tiny nested grid hierarchy (on mesh_helpers.grid_mesh) and a planted two-class mesh data set
for the DVAE tests (no mesh world needed)."""

from dataclasses import dataclass

import numpy as np
import torch
from mesh_helpers import grid_mesh


def _down(n: int) -> torch.Tensor:
    """Keep every other row and column of an n x n grid ((n + 1) / 2 squared vertices)."""
    m = (n + 1) // 2
    rows = torch.arange(m * m)
    cols = torch.tensor([2 * (i // m) * n + 2 * (i % m) for i in range(m * m)])
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(m * m), (m * m, n * n)).coalesce()


def _up(n: int) -> torch.Tensor:
    """Bilinear interpolation from the coarse grid back to the n x n grid."""
    m = (n + 1) // 2
    w = torch.zeros(n * n, m * m)
    for r in range(n):
        for c in range(n):
            r0, c0 = r // 2, c // 2
            r1, c1 = min(r0 + r % 2, m - 1), min(c0 + c % 2, m - 1)
            for rr, cc in {(r0, c0), (r0, c1), (r1, c0), (r1, c1)}:
                w[r * n + c, rr * m + cc] += 1.0
            w[r * n + c] /= w[r * n + c].sum()
    return w.to_sparse()


@dataclass(eq=False)
class Hierarchy:
    faces: list
    n_vertices: list
    down: list
    up: list

    def fingerprint(self) -> str:
        return f"grid{self.n_vertices}"


@dataclass(eq=False)
class Template:
    vertices: np.ndarray
    hierarchy: Hierarchy


def grid_template(n: int = 9, levels: int = 2) -> Template:
    sizes = [n]
    for _ in range(levels):
        sizes.append((sizes[-1] + 1) // 2)
    h = Hierarchy([grid_mesh(s)[1] for s in sizes], [s * s for s in sizes],
                  [_down(s) for s in sizes[:-1]], [_up(s) for s in sizes[:-1]])
    u, v = np.meshgrid(np.linspace(-50, 50, n), np.linspace(-50, 50, n), indexing="ij")
    verts = np.stack([u.ravel(), v.ravel(), 0.002 * (u ** 2 + v ** 2).ravel()], 1).astype(np.float32)
    return Template(verts, h)


def planted_meshes(template: Template, n: int, seed: int = 0, effect: float = 6.0):
    """Meshes = template + smooth identity modes + a class bump of ``effect`` mm near one corner."""
    g = torch.Generator().manual_seed(seed)
    base = torch.as_tensor(template.vertices)
    u, v = base[:, 0] / 50, base[:, 1] / 50
    modes = torch.stack([u, v], 1)  # (V, 2): 6 identity dimensions
    coef = torch.randn(n, 2, 3, generator=g) * 3.0
    y = (torch.arange(n) % 3 == 0).long()[torch.randperm(n, generator=g)]  # about a third in class 1
    bump = torch.exp(-((u - 0.4) ** 2 + (v - 0.4) ** 2) / 0.25)
    meshes = base + torch.einsum("vk,nkc->nvc", modes, coef)
    meshes[:, :, 2] += effect * y[:, None].float() * bump
    meshes += 0.2 * torch.randn(meshes.shape, generator=g)
    return meshes, y
