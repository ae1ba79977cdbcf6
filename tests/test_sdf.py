"""Signed-distance primitives against analytic cases and a brute-force reference."""

import math

import pytest
import torch

from mien.data.world.sdf import (Canvas, box_sdf, convex_sdf, coverage, ellipse_sdf, polygon_sdf,
                                 polyline_distance, segment_distance)


def grid_points(n=41, lo=-2.0, hi=2.0):
    xs = torch.linspace(lo, hi, n)
    yy, xx = torch.meshgrid(xs, xs, indexing="ij")
    return xx.reshape(1, -1), yy.reshape(1, -1)


def brute_polygon(p, verts):
    """Reference: dense sampling of the edges for the distance, matplotlib-free ray casting for the sign."""
    px, py = p[0][0], p[1][0]
    v = verts[0]
    t = torch.linspace(0, 1, 2001)[:, None]
    dense = torch.cat([v[i] + t * (v[(i + 1) % len(v)] - v[i]) for i in range(len(v))])
    d = torch.cdist(torch.stack([px, py], 1), dense).amin(1)
    inside = torch.zeros_like(px, dtype=torch.bool)
    for i in range(len(v)):
        a, b = v[i], v[(i + 1) % len(v)]
        cond = (a[1] > py) != (b[1] > py)
        xint = a[0] + (py - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
        inside ^= cond & (px < xint)
    return torch.where(inside, -d, d)


def test_segment_distance_analytic():
    p = (torch.tensor([[0.0, 2.0, -1.0, 0.5]]), torch.tensor([[1.0, 0.0, 0.0, -3.0]]))
    a, b = torch.tensor([[[-0.5, 0.0]]]), torch.tensor([[[1.0, 0.0]]])
    d = segment_distance(p, a, b)
    assert torch.allclose(d, torch.tensor([[1.0, 1.0, 0.5, 3.0]]))


def test_polygon_sdf_matches_brute_force_on_non_convex_polygon():
    verts = torch.tensor([[[-1.5, -1.0], [1.5, -1.2], [1.2, 1.4], [0.0, 0.2], [-1.3, 1.3]]])
    p = grid_points()
    ref = brute_polygon(p, verts)
    got = polygon_sdf(p, verts)
    assert torch.allclose(got, ref, atol=3e-3)
    # orientation does not matter
    assert torch.allclose(polygon_sdf(p, verts.flip(1)), got, atol=1e-5)


def test_convex_sdf_exact_inside_and_sign_outside():
    a = torch.linspace(0, 2 * math.pi, 13)[:-1]
    verts = torch.stack([torch.cos(a), torch.sin(a)], -1)[None]
    p = grid_points()
    exact = polygon_sdf(p, verts)
    approx = convex_sdf(p, verts)
    inside = exact < 0
    assert torch.allclose(approx[inside], exact[inside], atol=1e-5)
    assert (approx[~inside] >= -1e-5).all() and (approx[~inside] <= exact[~inside] + 1e-5).all()


def test_ellipse_and_box_sdf_on_boundary_and_centre():
    b = 1
    theta = torch.linspace(0, 2 * math.pi, 50)
    uv = ((2 * torch.cos(theta))[None], torch.sin(theta)[None])
    assert ellipse_sdf(uv, 2.0, 1.0).abs().max() < 1e-5
    assert ellipse_sdf((torch.zeros(b, 1), torch.zeros(b, 1)), 2.0, 1.0).item() < 0
    d = box_sdf((torch.tensor([[0.0, 3.0, 1.0]]), torch.tensor([[0.0, 0.0, 0.5]])), 1.0, 0.5, torch.zeros(1))
    assert torch.allclose(d, torch.tensor([[-0.5, 2.0, 0.0]]), atol=1e-6)


def test_polyline_distance_open_ends():
    verts = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]])
    p = (torch.tensor([[0.0]]), torch.tensor([[1.0]]))  # nearest: the second segment at distance 1
    assert torch.allclose(polyline_distance(p, verts), torch.tensor([[1.0]]))


def test_coverage_is_one_pixel_ramp():
    assert torch.equal(coverage(torch.tensor([-1.0, 0.0, 1.0])), torch.tensor([1.0, 0.5, 0.0]))


def test_canvas_windows_clip_to_image_and_paint_only_their_face():
    bg = torch.zeros(2, 3, 8, 8)
    canvas = Canvas(bg)
    w = canvas.window(torch.tensor([1]), torch.tensor([[-3.0, -3.0]]), torch.tensor([[3.0, 3.0]]))
    assert w.ix.min() >= 0 and w.iy.min() >= 0
    w.paint(torch.ones(1, 3), torch.ones(1, w.iy.shape[1], w.ix.shape[2]))
    w.commit()
    img = canvas.image()
    assert img[0].abs().sum() == 0
    assert img[1, :, :3, :3].min() == 1 and img[1, :, 4:, 4:].max() == 0


def test_shared_and_per_face_windows_paint_the_same_faces(monkeypatch):
    import mien.data.world.sdf as sdf
    from mien.data.world import WorldDataset, render_faces

    factors = WorldDataset(24, 64, seed=4).draw(range(24))
    images = []
    for slack in (0.0, float("inf")):  # never / always one window common to all faces
        monkeypatch.setattr(sdf, "SHARED_SLACK", slack)
        images.append(render_faces(factors, 64)[0])
    assert (images[0] - images[1]).abs().max() < 1e-4


@pytest.mark.parametrize("slack", [0.0, float("inf")])  # per-face and shared windows
def test_window_span_covers_each_faces_box_and_is_clipped(monkeypatch, slack):
    import mien.data.world.sdf as sdf

    monkeypatch.setattr(sdf, "SHARED_SLACK", slack)
    canvas = Canvas(torch.zeros(2, 3, 32, 32))
    w = canvas.window(torch.tensor([0, 1]), torch.tensor([[2.0, 4.0], [10.0, 6.0]]), torch.tensor([[12.0, 14.0], [20.0, 16.0]]))
    rows, cols = w.span(torch.tensor([[4.2, 5.0], [11.0, 8.5]]), torch.tensor([[6.0, 7.5], [13.7, 9.0]]))
    x, y = w.ix[..., cols], w.iy[:, rows]  # pixel indices the span selects, per face
    assert (x.amin(-1) <= torch.tensor([[4], [11]])).all() and (x.amax(-1) >= torch.tensor([[5], [13]])).all()
    assert (y.amin(1) <= torch.tensor([[5], [8]])).all() and (y.amax(1) >= torch.tensor([[7], [8]])).all()
    assert cols.stop - cols.start <= 10 and rows.stop - rows.start <= 10  # only the boxes, not the window
    rows, cols = w.span(torch.tensor([[-9.0, -9.0]] * 2), torch.tensor([[99.0, 99.0]] * 2))
    assert (rows.start, cols.start, rows.stop, cols.stop) == (0, 0, w.iy.shape[1], w.ix.shape[2])
