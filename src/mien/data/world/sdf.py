"""Signed-distance primitives and a windowed canvas for the world renderer.

Distances are in pixels, negative inside; coverage = clamp(0.5 - d, 0, 1) gives one pixel of
anti-aliasing. A primitive is evaluated only inside a rectangular window around it, clipped to
the image, for only the faces that show it: its cost grows with its size, not the image's.
Points are passed as (x, y) pairs of B x N tensors.
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
    best = inside = None
    for i in range(a.shape[1]):
        ax, ay = a[:, i, 0:1], a[:, i, 1:2]
        ex, ey = b[:, i, 0:1] - ax, b[:, i, 1:2] - ay
        wx, wy = px - ax, py - ay
        h = ((wx * ex + wy * ey) / (ex * ex + ey * ey).clamp_min(1e-8)).clamp_(0, 1)
        qx, qy = wx - h * ex, wy - h * ey
        d2 = qx * qx + qy * qy
        best = d2 if best is None else torch.minimum(best, d2, out=best)
        if parity:
            c1, c2, c3 = wy >= 0, wy < ey, ex * wy > ey * wx
            flip = (c1 == c2) & (c2 == c3)
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
    c = (n * verts).sum(-1, keepdim=True)
    out = d = None
    for i in range(verts.shape[1]) if edges is None else edges:
        d = torch.mul(p[0], n[:, i, 0:1], out=d).sub_(c[:, i]).addcmul_(p[1], n[:, i, 1:2])
        out = d.clone() if out is None else torch.maximum(out, d, out=out)
    return out


def ellipse_sdf(uv, rx, ry) -> torch.Tensor:
    """Approximate signed distance to an axis-aligned ellipse in local coordinates uv, radii rx, ry
    (floats or B tensors): Quilez's first-order estimate (k0 - 1) k0 / k1, exact on the boundary;
    k0 / k1 tends to the radius along the direction of approach, so the centre takes the smaller."""
    rx, ry = _col(rx), _col(ry)
    ux, uy = uv[0] / rx, uv[1] / ry
    k0 = (ux * ux + uy * uy).sqrt()
    k1 = ((ux / rx) ** 2 + (uy / ry) ** 2).sqrt()
    ratio = torch.where(k1 > 1e-12, k0 / k1.clamp_min(1e-12), torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry)))
    return (k0 - 1.0) * ratio


def box_sdf(uv, hx, hy, radius) -> torch.Tensor:
    """Signed distance to a rounded box centred at the origin with half sizes hx, hy."""
    r = _col(radius)
    qx, qy = uv[0].abs() - _col(hx) + r, uv[1].abs() - _col(hy) + r
    outside = (qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2).sqrt()
    return outside + torch.maximum(qx, qy).clamp_max(0) - r


def _col(v):
    return v[:, None] if torch.is_tensor(v) and v.dim() == 1 else v


def hash_noise(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Deterministic per-pixel value noise in [0, 1) from integer pixel coordinates."""
    h = (px * 374761393 + py * 668265263) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return (h ^ (h >> 16)).float() / 4294967296.0


class Canvas:
    """A batch of RGB images stored channel-first and flat (3 x B*S*S), so that windows of any
    subset of faces are gathered and written back with index_select / index_copy_."""

    def __init__(self, background: torch.Tensor):
        b, _, s, _ = background.shape
        self.size = s
        self.pixels = background.permute(1, 0, 2, 3).reshape(3, b * s * s).contiguous()

    def window(self, rows: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> "Window":
        """Windows over the boxes [lo, hi] (B x 2 pixels, clipped to the image) of faces `rows`."""
        s = self.size
        lo = lo.clamp(0, s).floor()
        hi = hi.clamp(0, s).ceil()
        kx = int(max(1.0, float((hi[:, 0] - lo[:, 0]).max()) if len(lo) else 1.0))
        ky = int(max(1.0, float((hi[:, 1] - lo[:, 1]).max()) if len(lo) else 1.0))
        x0 = lo[:, 0].long().clamp(max=s - kx)
        y0 = lo[:, 1].long().clamp(max=s - ky)
        ix = (x0[:, None] + torch.arange(kx))[:, None, :].expand(-1, ky, kx).reshape(len(rows), -1)
        iy = (y0[:, None] + torch.arange(ky))[:, :, None].expand(-1, ky, kx).reshape(len(rows), -1)
        return Window(self, ((rows[:, None] * s + iy) * s + ix).reshape(-1), ix, iy)

    def image(self) -> torch.Tensor:
        s = self.size
        return self.pixels.reshape(3, -1, s, s).permute(1, 0, 2, 3)


class Window:
    """Gathered pixels of one window (3 x B x N); paint() blends into them, commit() writes them back."""

    def __init__(self, canvas: Canvas, index: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor):
        self.canvas, self.index, self.ix, self.iy = canvas, index, ix, iy
        self.p = (ix.float() + 0.5, iy.float() + 0.5)  # pixel centres, B x N each
        self.rgb = canvas.pixels.index_select(1, index).view(3, *ix.shape)

    def paint(self, colour: torch.Tensor, alpha: torch.Tensor) -> None:
        """Blend colour (B x 3, or B x N x 3) with opacity alpha (B x N)."""
        colour = colour.T[:, :, None] if colour.dim() == 2 else colour.permute(2, 0, 1)
        self.rgb = torch.lerp(self.rgb, colour.expand_as(self.rgb), alpha)

    def commit(self) -> None:
        self.canvas.pixels.index_copy_(1, self.index, self.rgb.reshape(3, -1))
