"""Mesh networks in plain PyTorch (issue 17 item 3; Zou thesis §3.4.3 and ch. 4).

- :func:`spiral_indices`: the spiral sequences of SpiralNet++ (Gong et al. 2019, Sec. 3.1,
  ``utils/generate_spiral_seq.py``): for each vertex, the vertex itself, then its one-ring, then
  each further ring, every ring walked in the orientation of the triangles and starting next to
  the previous ring, cut to ``length * dilation`` entries and taken every ``dilation``-th.
  Built from the topology alone and cached by it.
- :class:`SpiralConv`: gather each vertex's spiral and apply one linear layer (SpiralNet++ Eq. 2).
- :func:`scaled_laplacian` and :class:`ChebConv`: the Chebyshev spectral convolution of CoMA
  (Ranjan et al. 2018, Eq. 2-3), sum_k T_k(L~) x W_k with T_0 = x, T_1 = L~ x,
  T_k = 2 L~ T_{k-1} - T_{k-2}; K = 6 as in CoMA.
- :class:`Pool`: a sparse (V_out, V_in) down- or up-sampling matrix applied to (B, V_in, C)
  features (CoMA Sec. 3.2; the matrices come from the mesh hierarchy).

Departures from the sources, named: where a vertex's rings run out before ``length * dilation``
entries (a tiny coarse level), SpiralNet++ pads from a k-d tree over vertex positions; here the
sequence is built from the topology only, so it repeats cyclically. An interior vertex's ring
starts at its smallest-index neighbour (SpiralNet++ takes OpenMesh's first half-edge), a boundary
vertex's at the neighbour that opens its fan, so the sequences do not depend on the order in which
the faces are listed. The matrices are non-persistent buffers of their COO entries (rebuilt from
the topology, not saved with the weights), applied by ``torch.sparse.mm``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

_SPIRALS: dict[tuple, torch.Tensor] = {}


def _topology_key(faces: np.ndarray, n_vertices: int) -> str:
    faces = np.ascontiguousarray(np.asarray(faces, dtype=np.int64))
    return hashlib.sha1(faces.tobytes() + str((faces.shape, n_vertices)).encode()).hexdigest()


def _one_rings(faces: np.ndarray, n_vertices: int) -> list[list[int]]:
    """Each vertex's neighbours in the orientation of its triangles: a face (a, b, c) puts c after b
    around a (and a after c around b, b after a around c)."""
    following: list[dict[int, int]] = [dict() for _ in range(n_vertices)]
    for a, b, c in np.asarray(faces, dtype=np.int64).tolist():
        following[a][b], following[b][c], following[c][a] = c, a, b
    rings = []
    for nxt in following:
        neighbours = set(nxt) | set(nxt.values())
        starts = sorted(set(nxt) - set(nxt.values())) or sorted(neighbours)[:1]
        ring: list[int] = []
        for start in starts:
            v = start
            while v not in ring:
                ring.append(v)
                if v not in nxt:
                    break
                v = nxt[v]
        rings.append(ring + sorted(neighbours - set(ring)))
    return rings


def _next_ring(rings: list[list[int]], last_ring: list[int], spiral: list[int]) -> list[int]:
    """The vertices next to ``last_ring`` not yet in the spiral, each vertex's ring rotated to start
    just after its first neighbour in ``last_ring`` (SpiralNet++ ``_next_ring``)."""
    seen, last, new = set(spiral), set(last_ring), []
    for v in last_ring:
        ring = rings[v]
        first = next((i for i, u in enumerate(ring) if u in last), -1)
        for u in ring[first + 1:] + ring[:max(first, 0)]:
            if u not in seen and u not in last:
                seen.add(u)
                new.append(u)
    return new


def _spiral(rings: list[list[int]], v: int, size: int) -> list[int]:
    spiral, last_ring = [v], list(rings[v])
    while last_ring and len(spiral) < size:
        spiral.extend(last_ring)
        last_ring = _next_ring(rings, last_ring, spiral)
    return [spiral[i % len(spiral)] for i in range(size)]


def spiral_indices(faces, n_vertices: int, length: int = 9, dilation: int = 1) -> torch.Tensor:
    """The (V, length) spiral sequences of a triangulation (SpiralNet++ Sec. 3.1): row v starts with
    v, then its one-ring in the triangles' orientation, then the next rings; every ``dilation``-th
    of the first ``length * dilation`` entries. Deterministic and cached by the topology."""
    if length < 1 or dilation < 1:
        raise ValueError(f"spiral length and dilation must be >= 1, got {length} and {dilation}")
    key = (_topology_key(faces, n_vertices), length, dilation)
    if key not in _SPIRALS:
        rings = _one_rings(faces, n_vertices)
        rows = [_spiral(rings, v, length * dilation)[::dilation] for v in range(n_vertices)]
        _SPIRALS[key] = torch.tensor(rows, dtype=torch.long).reshape(n_vertices, length)
    return _SPIRALS[key].clone()


class SpiralConv(nn.Module):
    """SpiralNet++ convolution (Gong et al. 2019, Eq. 2): out_v = W [x_s(v,1) || ... || x_s(v,L)] + b
    on (B, V, C) features, Xavier-initialised weights and zero bias as in their ``SpiralConv``."""

    def __init__(self, in_channels: int, out_channels: int, indices: torch.Tensor):
        super().__init__()
        self.register_buffer("indices", torch.as_tensor(indices, dtype=torch.long), persistent=False)
        self.linear = nn.Linear(in_channels * self.indices.shape[1], out_channels)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, v, _ = x.shape
        return self.linear(x[:, self.indices.reshape(-1)].reshape(b, v, -1))


def scaled_laplacian(faces, n_vertices: int) -> torch.Tensor:
    """The rescaled normalised graph Laplacian of CoMA (Ranjan et al. 2018, Sec. 3.1; Defferrard et al.
    2016): L~ = 2 L / lambda_max - I with L = I - D^-1/2 A D^-1/2 and lambda_max = 2 (CoMA's
    ``rescale_L``), i.e. L~ = -D^-1/2 A D^-1/2, a sparse (V, V) float32 tensor with spectrum in [-1, 1]."""
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    degree = np.bincount(rows, minlength=n_vertices).astype(np.float64)
    scale = 1.0 / np.sqrt(np.maximum(degree, 1.0))
    values = -scale[rows] * scale[cols]
    index = torch.as_tensor(np.stack([rows, cols]), dtype=torch.long)
    return torch.sparse_coo_tensor(index, torch.as_tensor(values, dtype=torch.float32),
                                   (n_vertices, n_vertices), check_invariants=False).coalesce()


def sparse_apply(index: torch.Tensor, values: torch.Tensor, shape: tuple, x: torch.Tensor) -> torch.Tensor:
    """(M x)[b] for a sparse M (coalesced COO ``index`` (2, nnz), ``values``, ``shape``) and x of
    shape (B, V_in, C): one sparse-dense product over the B * C columns."""
    m = torch.sparse_coo_tensor(index, values.to(x.dtype), shape, is_coalesced=True, check_invariants=False)
    b, v, c = x.shape
    return torch.sparse.mm(m, x.transpose(0, 1).reshape(v, b * c)).reshape(shape[0], b, c).transpose(0, 1)


class _SparseMatrix(nn.Module):
    """A fixed sparse matrix held as non-persistent buffers (its entries), applied by :func:`sparse_apply`."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        matrix = matrix.coalesce().float()
        self.shape = tuple(matrix.shape)
        self.register_buffer("index", matrix.indices().clone(), persistent=False)
        self.register_buffer("values", matrix.values().clone(), persistent=False)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return sparse_apply(self.index, self.values, self.shape, x)


class ChebConv(nn.Module):
    """Chebyshev spectral convolution (CoMA, Ranjan et al. 2018, Eq. 3): y = sum_{k<K} T_k(L~) x W_k + b
    on (B, V, C) features with the scaled Laplacian ``laplacian`` (:func:`scaled_laplacian`)."""

    def __init__(self, in_channels: int, out_channels: int, K: int = 6, laplacian: torch.Tensor | None = None):
        super().__init__()
        if K < 1 or laplacian is None:
            raise ValueError("ChebConv needs K >= 1 and a scaled Laplacian")
        self.K = K
        self.laplacian = _SparseMatrix(laplacian)
        self.weight = nn.Parameter(torch.empty(K, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.xavier_uniform_(self.weight.view(K * in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        terms = [x]
        for k in range(1, self.K):
            step = self.laplacian.apply(terms[-1])
            terms.append(step if k == 1 else 2 * step - terms[-2])
        return sum(t @ w for t, w in zip(terms, self.weight)) + self.bias


class Pool(nn.Module):
    """Mesh down- or up-sampling (CoMA Sec. 3.2): y = Q x for a sparse (V_out, V_in) matrix Q of the
    mesh hierarchy, on (B, V_in, C) features."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.matrix = _SparseMatrix(matrix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.matrix.shape[1]:
            raise ValueError(f"Pool expects {self.matrix.shape[1]} vertices, got {x.shape[1]}")
        return self.matrix.apply(x)
