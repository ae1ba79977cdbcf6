"""The mesh networks of the DVAE (Zou thesis §4.5.1, Fig. 4.2): CoMA's blocks (Ranjan et al. 2018)
of Chebyshev convolutions of order K with the hierarchy's down- and up-sampling, the stacks of
:mod:`mien.models.mesh.stacks` (``kind: cheb``), with a dense layer to and from the coarsest level.

Departure: the thesis gives the channel widths and pooling factors only in Fig. 4.2; the defaults
are CoMA's (filters 16-16-16-32) on the mesh world's nested hierarchy.
"""

from __future__ import annotations

import torch
from torch import nn

from mien.models.mesh.stacks import MeshDecoderStack, MeshEncoder as ChebStack, layer_levels


def template_of(mesh_size: str):
    """The mesh world's template of a size (its hierarchy is the networks' topology)."""
    from mien.data.world.mesh import mesh_template

    return mesh_template(mesh_size)


def coarsest(hierarchy, blocks: int) -> int:
    """The number of vertices the last of ``blocks`` encoder blocks runs on."""
    return hierarchy.n_vertices[layer_levels(blocks, len(hierarchy.n_vertices))[-1]]


class MeshEncoder(nn.Module):
    """(B, V_0, C_in) -> (B, V_last * filters[-1]): the convolution blocks q_0 and q_1, q_2 share."""

    def __init__(self, hierarchy, in_channels: int, filters: list[int], K: int):
        super().__init__()
        self.stack = ChebStack("cheb", hierarchy, in_channels, filters, cheb_k=K)
        self.out_features = coarsest(hierarchy, len(filters)) * filters[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stack(x).flatten(1)


class MeshDecoder(nn.Module):
    """f(z, y) of Eq. 4.9: (B, latent) -> (B, V_0, 3), a dense layer to the coarsest level then the
    mirrored blocks (the last, linear, starts at zero: the mean mesh)."""

    def __init__(self, hierarchy, latent: int, filters: list[int], K: int):
        super().__init__()
        self.coarse = (coarsest(hierarchy, len(filters)), filters[-1])
        self.dense = nn.Linear(latent, self.coarse[0] * self.coarse[1])
        self.stack = MeshDecoderStack("cheb", hierarchy, list(reversed(filters)), 3, cheb_k=K)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.stack(self.dense(latent).view(-1, *self.coarse))


def mlp_head(features: int, hidden: int, out: int) -> nn.Sequential:
    """Dense -> ELU -> dense: q_0's head (the class logits P_y before the softmax)."""
    return nn.Sequential(nn.Linear(features, hidden), nn.ELU(), nn.Linear(hidden, out))
