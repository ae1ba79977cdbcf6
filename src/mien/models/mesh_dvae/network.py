"""The mesh networks of the DVAE (Zou thesis §4.5.1, Fig. 4.2): CoMA-style blocks (Ranjan et al.
2018) of Chebyshev spectral convolutions of order K on each level of the mesh hierarchy, with the
hierarchy's down- and up-sampling matrices between levels.

Encoder block l: ChebConv at level l -> ELU -> down-sampling to level l + 1 (for the first
``len(hierarchy.down)`` blocks; later blocks stay on the coarsest level). The decoder mirrors it:
a dense layer to the coarsest level, then up-sampling -> ChebConv -> ELU per level and a last
ChebConv to the 3 coordinates. Departure: the thesis gives channel widths and pooling factors only
in Fig. 4.2; the defaults are CoMA's (filters 16-16-16-32) on the mesh world's nested hierarchy.
"""

from __future__ import annotations

import torch
from torch import nn

from mien.nn.mesh import ChebConv, Pool, scaled_laplacian


def template_of(mesh_size: str):
    """The mesh world's template of a size (its hierarchy is the networks' topology)."""
    from mien.data.world.mesh import mesh_template

    return mesh_template(mesh_size)


def laplacians(hierarchy) -> list[torch.Tensor]:
    """The scaled Laplacian of every level."""
    return [scaled_laplacian(f, n) for f, n in zip(hierarchy.faces, hierarchy.n_vertices)]


def levels_of(hierarchy, blocks: int) -> list[int]:
    """The level each of ``blocks`` encoder blocks convolves on."""
    return [min(i, len(hierarchy.down)) for i in range(blocks)]


class MeshEncoder(nn.Module):
    """(B, V_0, C_in) -> (B, V_last * filters[-1]): the convolution blocks q_0 and q_1, q_2 share."""

    def __init__(self, hierarchy, in_channels: int, filters: list[int], K: int):
        super().__init__()
        laps, levels = laplacians(hierarchy), levels_of(hierarchy, len(filters))
        widths = [in_channels, *filters]
        self.convs = nn.ModuleList(ChebConv(widths[i], widths[i + 1], K, laps[l]) for i, l in enumerate(levels))
        self.pools = nn.ModuleList(Pool(hierarchy.down[l]) if l < len(hierarchy.down) else nn.Identity()
                                   for l in levels)
        self.out_vertices = hierarchy.n_vertices[min(len(filters), len(hierarchy.down))]
        self.out_features = self.out_vertices * filters[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, pool in zip(self.convs, self.pools):
            x = pool(nn.functional.elu(conv(x)))
        return x.flatten(1)


class MeshDecoder(nn.Module):
    """f(z, y) of Eq. 4.9: (B, latent) -> (B, V_0, 3)."""

    def __init__(self, hierarchy, latent: int, filters: list[int], K: int):
        super().__init__()
        laps, levels = laplacians(hierarchy), levels_of(hierarchy, len(filters))
        self.coarse = (hierarchy.n_vertices[min(len(filters), len(hierarchy.down))], filters[-1])
        self.dense = nn.Linear(latent, self.coarse[0] * self.coarse[1])
        widths = list(reversed(filters))
        out_levels = list(reversed(levels))
        self.pools = nn.ModuleList(Pool(hierarchy.up[l]) if l < len(hierarchy.up) else nn.Identity()
                                   for l in out_levels)
        self.convs = nn.ModuleList(ChebConv(widths[i], widths[min(i + 1, len(widths) - 1)], K, laps[l])
                                   for i, l in enumerate(out_levels))
        self.out = ChebConv(widths[-1], 3, K, laps[0])

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.dense(latent).view(-1, *self.coarse)
        for pool, conv in zip(self.pools, self.convs):
            x = nn.functional.elu(conv(pool(x)))
        return self.out(x)


def mlp_head(features: int, hidden: int, out: int) -> nn.Sequential:
    """Dense -> ELU -> dense: q_0's head (the class logits P_y before the softmax)."""
    return nn.Sequential(nn.Linear(features, hidden), nn.ELU(), nn.Linear(hidden, out))
