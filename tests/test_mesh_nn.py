"""Mesh networks (issue 17 item 3): SpiralNet++ spirals, SpiralConv, CoMA's Chebyshev convolution
and pooling, against the topology they are built from and the dense formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mesh_helpers import grid_mesh, icosphere
from mien.nn.mesh import ChebConv, Pool, SpiralConv, scaled_laplacian, spiral_indices

MESHES = {"closed": icosphere(1), "open": grid_mesh(6)}


def neighbours(faces, v):
    return {int(u) for f in faces if v in f for u in f if u != v}


@pytest.mark.parametrize("kind", MESHES)
def test_spirals_have_the_stated_length_and_walk_the_rings_in_orientation(kind):
    vertices, faces = MESHES[kind]
    v_count = len(vertices)
    s = spiral_indices(faces, v_count, length=12)
    assert s.shape == (v_count, 12) and s.dtype == torch.long
    assert torch.equal(s[:, 0], torch.arange(v_count))
    oriented = {tuple(np.roll(f, r)) for f in faces.tolist() for r in range(3)}
    for v in range(v_count):
        ring = neighbours(faces, v)
        row = s[v].tolist()
        assert len(set(row)) == len(row)  # rings do not run out on these meshes
        assert set(row[1:1 + len(ring)]) == ring
        walk = row[1:1 + len(ring)]
        for u, w in zip(walk, walk[1:]):  # consecutive one-ring vertices share a triangle with v, in its orientation
            assert (v, u, w) in oriented
        second = set().union(*(neighbours(faces, u) for u in ring)) - ring - {v}
        assert set(row[1 + len(ring):1 + len(ring) + len(second)]) <= second


@pytest.mark.parametrize("kind", MESHES)
def test_spirals_are_deterministic_and_independent_of_face_order(kind):
    vertices, faces = MESHES[kind]
    rng = np.random.default_rng(0)
    shuffled = np.stack([np.roll(f, rng.integers(3)) for f in faces[rng.permutation(len(faces))]])
    first = spiral_indices(faces, len(vertices), 9)
    assert torch.equal(first, spiral_indices(faces, len(vertices), 9))
    assert torch.equal(first, spiral_indices(shuffled, len(vertices), 9))
    assert torch.equal(spiral_indices(faces, len(vertices), 4, dilation=2), spiral_indices(faces, len(vertices), 8)[:, ::2])


def test_a_spiral_longer_than_the_mesh_repeats_cyclically():
    s = spiral_indices(np.array([[0, 1, 2]]), 3, length=5)
    assert s[0].tolist() == [0, 1, 2, 0, 1] and s[1].tolist() == [1, 2, 0, 1, 2]


def dense(matrix):
    return matrix.to_dense().double()


@pytest.mark.parametrize("kind", MESHES)
def test_scaled_laplacian_is_minus_the_normalised_adjacency(kind):
    vertices, faces = MESHES[kind]
    n = len(vertices)
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    for v in range(n):
        adjacency[v, list(neighbours(faces, v))] = 1
    d = adjacency.sum(1).rsqrt()
    lap = dense(scaled_laplacian(faces, n))
    assert torch.allclose(lap, -d[:, None] * adjacency * d[None], atol=1e-6)
    eig = torch.linalg.eigvalsh(lap)
    assert eig.min() >= -1 - 1e-5 and eig.max() <= 1 + 1e-5
    root_degree = adjacency.sum(1).sqrt()  # D^1/2 1 spans the kernel of L, so L~ maps it to minus itself
    assert torch.allclose(lap @ root_degree, -root_degree, atol=1e-5)


def test_chebconv_with_one_term_is_a_linear_layer():
    vertices, faces = MESHES["closed"]
    conv = ChebConv(3, 5, K=1, laplacian=scaled_laplacian(faces, len(vertices)))
    torch.nn.init.normal_(conv.bias)
    linear = torch.nn.Linear(3, 5)
    with torch.no_grad():
        linear.weight.copy_(conv.weight[0].T)
        linear.bias.copy_(conv.bias)
    x = torch.randn(2, len(vertices), 3)
    assert torch.allclose(conv(x), linear(x), atol=1e-6)


def test_chebconv_is_the_chebyshev_polynomial_of_the_laplacian():
    vertices, faces = MESHES["open"]
    n = len(vertices)
    lap = scaled_laplacian(faces, n)
    conv = ChebConv(2, 3, K=4, laplacian=lap).double()
    x = torch.randn(2, n, 2, dtype=torch.float64)
    l_ = dense(lap)
    t = [torch.eye(n, dtype=torch.float64), l_, 2 * l_ @ l_ - torch.eye(n, dtype=torch.float64)]
    t.append(2 * l_ @ t[2] - t[1])
    expected = sum(tk @ x @ w for tk, w in zip(t, conv.weight)) + conv.bias
    assert torch.allclose(conv(x), expected, atol=1e-8)


def test_pool_applies_its_matrix_and_checks_the_vertex_count():
    rng = torch.Generator().manual_seed(0)
    matrix = (torch.rand(4, 10, generator=rng) * (torch.rand(4, 10, generator=rng) < 0.3)).to_sparse()
    pool = Pool(matrix)
    x = torch.randn(3, 10, 2, generator=rng)
    y = pool(x)
    assert y.shape == (3, 4, 2)
    assert torch.allclose(y, torch.einsum("ov,bvc->boc", matrix.to_dense(), x), atol=1e-6)
    with pytest.raises(ValueError, match="10 vertices"):
        pool(torch.randn(3, 9, 2))


def test_gradients_flow_through_every_layer_and_topology_is_not_saved():
    vertices, faces = MESHES["closed"]
    n = len(vertices)
    net = torch.nn.Sequential(SpiralConv(3, 4, spiral_indices(faces, n, 9)),
                              ChebConv(4, 4, 6, scaled_laplacian(faces, n)),
                              Pool(torch.eye(n)[: n // 2].to_sparse()))
    x = torch.randn(2, n, 3, requires_grad=True)
    net(x).square().sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert set(net.state_dict()) == {"0.linear.weight", "0.linear.bias", "1.weight", "1.bias"}
