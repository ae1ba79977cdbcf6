"""Convolution stacks over a mesh hierarchy (issue 17 item 4): five layers of spiral (SpiralNet++)
or Chebyshev (CoMA) convolutions from the finest level to the coarsest (encoder) or back
(decoder), each followed by ELU (SpiralNet++ and CoMA) except the decoder's last, with the
hierarchy's down- or up-sampling between levels.

Layer i runs on level min(i, levels - 1), so five layers on a four-level hierarchy run on levels
0, 1, 2, 3, 3 (the decoder: 3, 3, 2, 1, 0); pooling sits between layers of different levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mien.nn.mesh import ChebConv, Pool, SpiralConv, scaled_laplacian, spiral_indices


def layer_levels(n_layers: int, n_levels: int) -> list[int]:
    """The hierarchy level of each encoder layer, finest first."""
    return [min(i, n_levels - 1) for i in range(n_layers)]


def mesh_conv(kind: str, hierarchy, level: int, c_in: int, c_out: int, spiral_length: int, cheb_k: int) -> nn.Module:
    faces, n = hierarchy.faces[level], hierarchy.n_vertices[level]
    if kind == "spiral":
        return SpiralConv(c_in, c_out, spiral_indices(faces, n, spiral_length))
    return ChebConv(c_in, c_out, cheb_k, scaled_laplacian(faces, n))


class MeshEncoder(nn.Module):
    """(B, V_0, c_in) -> (B, V_coarsest, widths[-1]): conv, ELU, and down-sampling where the level changes."""

    def __init__(self, kind: str, hierarchy, c_in: int, widths: list[int], spiral_length: int = 9, cheb_k: int = 6):
        super().__init__()
        self.levels = layer_levels(len(widths), len(hierarchy.n_vertices))
        chans = [c_in, *widths]
        self.convs = nn.ModuleList(mesh_conv(kind, hierarchy, lv, chans[i], chans[i + 1], spiral_length, cheb_k)
                                   for i, lv in enumerate(self.levels))
        self.pools = nn.ModuleDict({str(i): Pool(hierarchy.down[lv]) for i, lv in enumerate(self.levels[:-1])
                                    if self.levels[i + 1] != lv})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.elu(conv(x))
            if str(i) in self.pools:
                x = self.pools[str(i)](x)
        return x


class MeshDecoderStack(nn.Module):
    """(B, V_coarsest, widths[0]) -> (B, V_0, c_out): up-sampling where the level changes, conv, and
    ELU after every layer but the last, which starts at zero (so training starts from dM = 0);
    ``widths`` are the decoder's input widths, coarse first."""

    def __init__(self, kind: str, hierarchy, widths: list[int], c_out: int, spiral_length: int = 9, cheb_k: int = 6):
        super().__init__()
        self.levels = layer_levels(len(widths), len(hierarchy.n_vertices))[::-1]
        chans = [*widths, c_out]
        self.convs = nn.ModuleList(mesh_conv(kind, hierarchy, lv, chans[i], chans[i + 1], spiral_length, cheb_k)
                                   for i, lv in enumerate(self.levels))
        self.pools = nn.ModuleDict({str(i): Pool(hierarchy.up[lv]) for i, lv in enumerate(self.levels[1:], 1)
                                    if self.levels[i - 1] != lv})
        last = self.convs[-1]
        nn.init.zeros_(last.linear.weight if kind == "spiral" else last.weight)  # start from dM = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            if str(i) in self.pools:
                x = self.pools[str(i)](x)
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.elu(x)
        return x
