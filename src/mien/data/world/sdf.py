"""Signed-distance primitives and a windowed canvas for the world renderer.

Distances are in pixels, negative inside; coverage = clamp(0.5 - d, 0, 1) gives one pixel of
anti-aliasing. A primitive is evaluated only inside a rectangular window around it, clipped to
the image, for only the faces that show it: its cost grows with its size, not the image's.
Points are passed as (x, y) pairs of tensors whose first dimension is the face: B x N, or, as
windows give them, x as B x 1 x W and y as B x H x 1, so that terms in x or y alone are computed
once per column or row and only their combinations cover the whole window.
"""

from __future__ import annotations

import torch


def coverage(d: torch.Tensor) -> torch.Tensor:
    return (0.5 - d).clamp_(0.0, 1.0)


def _segments(p, a: torch.Tensor, b: torch.Tensor, parity: bool = False):
    """Minimum distance from points p to the segments a_i b_i (B x S x 2) and, if asked, the
    parity of the outline crossings of a ray from each point (the even-odd rule). Segments are
    visited one at a time: B x N working tensors stay in cache, which beats broadcasting to
    B x N x S."""
    px, py = p
    a, b = _col(a, px), _col(b, px)
    best = inside = None
    for i in range(a.shape[1]):
        ax, ay = a[:, i, 0], a[:, i, 1]
        ex, ey = b[:, i, 0] - ax, b[:, i, 1] - ay
        wx, wy = px - ax, py - ay  # a column and a row
        h = (wx * ex + wy * ey).div_((ex * ex + ey * ey).clamp_min(1e-8)).clamp_(0, 1)
        qx, qy = (h * ex).sub_(wx), (h * ey).sub_(wy)  # minus the offset from the nearest point
        d2 = qx.mul_(qx).add_(qy.mul_(qy))
        best = d2 if best is None else torch.minimum(best, d2, out=best)
        if parity:
            c1, c2 = wy >= 0, wy < ey
            flip = (ex * wy > ey * wx).eq_(c2).logical_and_(c1 == c2)
            inside = flip if inside is None else inside.logical_xor_(flip)
    return best.sqrt(), inside


def segment_distance(p, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Unsigned distance from points p to the nearest of the segments a_i b_i (B x S x 2)."""
    return _segments(p, a, b)[0]


def polyline_distance(p, verts: torch.Tensor) -> torch.Tensor:
    """Unsigned distance from points p to the open polyline through verts (B x M x 2)."""
    return _segments(p, verts[:, :-1], verts[:, 1:])[0]


def polygon_sdf(p, verts: torch.Tensor) -> torch.Tensor:
    """Exact signed distance to a simple polygon (any orientation, convex or not): the distance to
    its edges, negative where a ray from the point crosses the outline an odd number of times."""
    d, inside = _segments(p, verts, torch.roll(verts, -1, 1), parity=True)
    return torch.where(inside, -d, d)


def convex_sdf(p, verts: torch.Tensor, edges=None) -> torch.Tensor:
    """Signed distance to a convex polygon as the max over its edges' half-planes: exact inside and
    along edges, an under-estimate only off its corners, which is enough for anti-aliasing.
    ``edges`` (indices i of edges from vertex i to i+1) keeps only those half-planes: a cheaper,
    larger region for clipping shapes that can only cross those edges."""
    nxt = torch.roll(verts, -1, 1)
    e = nxt - verts
    area = (verts[..., 0] * nxt[..., 1] - nxt[..., 0] * verts[..., 1]).sum(1)
    n = torch.stack([e[..., 1], -e[..., 0]], -1) / e.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    n = n * torch.sign(area)[:, None, None]  # outward normals whatever the orientation
    c = _col((n * verts).sum(-1), p[0])
    n = _col(n, p[0])
    out = None
    for i in range(verts.shape[1]) if edges is None else edges:
        d = torch.addcmul(p[0] * n[:, i, 0] - c[:, i], p[1], n[:, i, 1])
        out = d if out is None else torch.maximum(out, d, out=out)
    return out


def ellipse_sdf(uv, rx, ry) -> torch.Tensor:
    """Approximate signed distance to an axis-aligned ellipse in local coordinates uv, radii rx, ry
    (floats or B tensors): Quilez's first-order estimate (k0 - 1) k0 / k1, exact on the boundary;
    k0 / k1 tends to the radius along the direction of approach, so the centre takes the smaller."""
    rx, ry = _col(rx, uv[0]), _col(ry, uv[0])
    ux, uy = uv[0] / rx, uv[1] / ry
    k0 = (ux * ux + uy * uy).sqrt()
    k1 = ((ux / rx) ** 2 + (uy / ry) ** 2).sqrt()
    ratio = torch.where(k1 > 1e-12, k0 / k1.clamp_min(1e-12), torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry)))
    return (k0 - 1.0) * ratio


def box_sdf(uv, hx, hy, radius) -> torch.Tensor:
    """Signed distance to a rounded box centred at the origin with half sizes hx, hy."""
    r = _col(radius, uv[0])
    qx, qy = uv[0].abs() - _col(hx, uv[0]) + r, uv[1].abs() - _col(hy, uv[0]) + r
    outside = (qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2).sqrt()
    return outside + torch.maximum(qx, qy).clamp_max(0) - r


def _col(v, like: torch.Tensor):
    """Per-face values (a B, B x S or B x S x 2 tensor) with trailing singleton dimensions, so that
    indexing a face's entry leaves a column that broadcasts against points ``like``; floats pass through."""
    if torch.is_tensor(v):
        return v.reshape(*v.shape, *[1] * (like.dim() - 1))
    return v


def hash_noise(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Deterministic per-pixel value noise in [0, 1) from integer pixel coordinates."""
    h = (px * 374761393 + py * 668265263) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return (h ^ (h >> 16)).float() / 4294967296.0


SHARED_SLACK = 1.25  # a window common to all faces may cover this much more than the largest box


class Canvas:
    """A batch of RGB images, channel-first (3 x B x S x S). A window is either one rectangle
    common to all its faces (a slice of the canvas: no copies when it spans every face) or, where
    the faces' boxes lie too far apart for that, a box per face gathered and written back with
    index_select / index_copy_ on the flat pixels."""

    def __init__(self, background: torch.Tensor):
        self.size = background.shape[-1]
        self.pixels = background.permute(1, 0, 2, 3).contiguous()

    def window(self, rows: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> "Window":
        """A window over the boxes [lo, hi] (B x 2 pixels, clipped to the image) of faces ``rows``:
        pixel columns ix (B x 1 x W, or 1 x 1 x W shared) and rows iy (B x H x 1, or 1 x H x 1)."""
        s = self.size
        lo = lo.clamp(0, s).floor()
        hi = hi.clamp(0, s).ceil()
        kx = int(max(1.0, float((hi[:, 0] - lo[:, 0]).max()) if len(lo) else 1.0))
        ky = int(max(1.0, float((hi[:, 1] - lo[:, 1]).max()) if len(lo) else 1.0))
        if len(lo):
            (ux0, uy0), (ux1, uy1) = lo.amin(0).long().tolist(), hi.amax(0).long().tolist()
            if (ux1 - ux0) * (uy1 - uy0) <= SHARED_SLACK * kx * ky:
                return Window(self, rows, torch.arange(ux0, max(ux1, ux0 + 1))[None, None, :],
                              torch.arange(uy0, max(uy1, uy0 + 1))[None, :, None], shared=True)
        x0 = lo[:, 0].long().clamp(max=s - kx)
        y0 = lo[:, 1].long().clamp(max=s - ky)
        return Window(self, rows, (x0[:, None] + torch.arange(kx))[:, None, :],
                      (y0[:, None] + torch.arange(ky))[:, :, None])

    def image(self) -> torch.Tensor:
        return self.pixels.permute(1, 0, 2, 3)


class Window:
    """The pixels of one window (3 x B x H x W) of faces ``rows``: paint() blends into them,
    commit() writes them back. A shared window (ix, iy with a leading 1) is a slice of the canvas,
    painted in place when it spans every face."""

    def __init__(self, canvas: Canvas, rows: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor, shared: bool = False):
        self.canvas, self.rows, self.ix, self.iy, self.shared = canvas, rows, ix, iy, shared
        self.p = (ix.float() + 0.5, iy.float() + 0.5)  # pixel centres
        if shared:
            x, y = ix[0, 0], iy[0, :, 0]
            self.block = canvas.pixels[:, :, int(y[0]):int(y[-1]) + 1, int(x[0]):int(x[-1]) + 1]
            self.in_place = len(rows) == canvas.pixels.shape[1]
            self.rgb = self.block if self.in_place else self.block.index_select(1, rows)
        else:
            s = canvas.size
            self.index = ((rows[:, None, None] * s + iy) * s + ix).reshape(-1)
            self.rgb = canvas.pixels.view(3, -1).index_select(1, self.index).view(3, len(rows), iy.shape[1], ix.shape[2])

    def span(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[slice, slice]:
        """The rows and columns of this window that hold every face's box [lo, hi] (B x 2 pixels):
        where a term that only matters near a smaller shape needs evaluating."""
        origin = torch.stack([self.ix[:, 0, 0], self.iy[:, 0, 0]], 1)  # each face's top-left pixel (or one for all)
        x0, y0 = (lo.floor() - origin).amin(0).long().tolist()
        x1, y1 = (hi.ceil() - origin).amax(0).long().tolist()
        h, w = self.iy.shape[1], self.ix.shape[2]
        y0, x0 = min(max(y0, 0), h), min(max(x0, 0), w)
        return slice(y0, max(y0, min(y1, h))), slice(x0, max(x0, min(x1, w)))

    def paint(self, colour: torch.Tensor, alpha: torch.Tensor) -> None:
        """Blend colour (B x 3, or B x H x W x 3) with opacity alpha (B x H x W)."""
        colour = colour.T[:, :, None, None] if colour.dim() == 2 else colour.permute(3, 0, 1, 2)
        self.rgb.lerp_(colour.expand_as(self.rgb), alpha.expand_as(self.rgb[0]))

    def commit(self) -> None:
        if not self.shared:
            self.canvas.pixels.view(3, -1).index_copy_(1, self.index, self.rgb.reshape(3, -1))
        elif not self.in_place:
            self.block.index_copy_(1, self.rows, self.rgb)
