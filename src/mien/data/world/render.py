"""The world renderer: batched, vectorised torch, anti-aliased signed-distance primitives anchored
to the projected landmarks, with Lambert shading of the face.

Layers are painted back to front (background, shoulders, hair behind, neck, ears, hair, face,
wrinkles, fringe, brows, eyes, beard, nose, mouth, glasses, hat). Shapes that lie on the face
are evaluated in the head's local frame (the inverse of the projected model x/y axes), so they
compress with yaw; far-side ears and hair move behind the face outline and are occluded by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from mien.data.world import geometry as geo
from mien.data.world.sdf import (Canvas, Window, box_sdf, convex_sdf, coverage, ellipse_sdf, hash_noise,
                                 polygon_sdf, polyline_distance, segment_distance)

SKIN = torch.tensor([[0.36, 0.23, 0.16], [0.55, 0.37, 0.25], [0.78, 0.58, 0.45], [0.97, 0.82, 0.71]])
HAIR = torch.tensor([[0.07, 0.06, 0.06], [0.22, 0.13, 0.07], [0.42, 0.27, 0.13], [0.60, 0.27, 0.11],
                     [0.88, 0.74, 0.44]])
EYES = torch.tensor([[0.33, 0.18, 0.08], [0.22, 0.42, 0.75], [0.25, 0.52, 0.27], [0.48, 0.53, 0.58]])
FRAMES = torch.tensor([[0.05, 0.05, 0.05], [0.42, 0.22, 0.08], [0.70, 0.10, 0.10], [0.12, 0.18, 0.60],
                       [0.78, 0.68, 0.40]])
WHITE, DARK = torch.tensor([0.95, 0.94, 0.92]), torch.tensor([0.08, 0.06, 0.05])
FOREHEAD = [geo.AUX[f"forehead{i}"] for i in range(9)]
FACE_OUTLINE = list(geo.JAW) + FOREHEAD
EYES_IDX = (list(geo.REYE), list(geo.LEYE))
SIDE_EDGES = [0, 1, 14, 15, 16, 17, 24, 25]  # outline edges beside the brows and eyes


def col(t: torch.Tensor) -> torch.Tensor:
    """A per-face value (B) as a B x 1 x 1 column against a window's B x H x W pixels."""
    return t[:, None, None]


def palette(colours: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear colour ramp: u in [0, 1] -> RGB."""
    x = u.float().clamp(0, 1) * (len(colours) - 1)
    i = x.floor().long().clamp(max=len(colours) - 2)
    w = (x - i)[:, None]
    return colours[i] * (1 - w) + colours[i + 1] * w


def hsv(h: torch.Tensor, s: float, v: float) -> torch.Tensor:
    """HSV -> RGB for a batch of hues with fixed saturation and value."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + h.float()[:, None] * 6) % 6
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


@dataclass
class Faces:
    """Everything the layers need about a (sub)batch of faces."""

    rows: torch.Tensor  # B: index of each face in the canvas
    xy: torch.Tensor  # B x P x 2: pixel positions of all model points
    axes: torch.Tensor  # B x 2 x 2: pixels per model unit (columns: model x, model y)
    inv: torch.Tensor  # B x 2 x 2
    ppu: torch.Tensor  # B: pixels per model unit
    rot: torch.Tensor  # B x 3 x 3
    sil: torch.Tensor  # B x 2 x 2: the head-silhouette frame, axes not foreshortened by yaw and pitch
    sil_inv: torch.Tensor  # B x 2 x 2
    f: dict  # factor name -> B
    col: dict  # colour name -> B x 3

    def select(self, mask: torch.Tensor) -> "Faces | None":
        idx = mask.nonzero().squeeze(1)
        if len(idx) == 0:
            return None
        if len(idx) == len(mask):
            return self
        take = {k.name: getattr(self, k.name) for k in fields(self)}
        return Faces(**{k: ({n: t[idx] for n, t in v.items()} if isinstance(v, dict) else v[idx])
                        for k, v in take.items()})

    def at(self, i) -> torch.Tensor:
        return self.xy[:, i]

    def offset(self, i, du: float, dv: float) -> torch.Tensor:
        """Pixel position of model point i moved by (du, dv) model units in the face plane."""
        return self.xy[:, i] + self.axes[:, :, 0] * du + self.axes[:, :, 1] * dv

    def local(self, p, origin: torch.Tensor, silhouette: bool = False):
        """Face-plane coordinates (model units, y up) of pixels p around origin (B x 2). With
        ``silhouette`` the frame is not foreshortened by yaw and pitch: the outline of a round
        volume (the skull under hair or a hat) keeps its width as the head turns."""
        dx, dy = p[0] - col(origin[:, 0]), p[1] - col(origin[:, 1])
        inv = self.sil_inv if silhouette else self.inv
        return (col(inv[:, 0, 0]) * dx + col(inv[:, 0, 1]) * dy, col(inv[:, 1, 0]) * dx + col(inv[:, 1, 1]) * dy)

    def around(self, canvas: Canvas, idx, margin: float) -> Window:
        """Window over the bounding box of model points idx plus a margin in model units."""
        pts = self.xy[:, idx]
        m = (margin * self.ppu)[:, None] + 1
        return canvas.window(self.rows, pts.amin(1) - m, pts.amax(1) + m)

    def box(self, canvas: Canvas, centre: torch.Tensor, hu: float, hv: float, silhouette=False) -> Window:
        """Window over a face-plane rectangle of half sizes (hu, hv) model units around centre."""
        axes = self.sil if silhouette else self.axes
        half = axes[:, :, 0].abs() * hu + axes[:, :, 1].abs() * hv + 1
        return canvas.window(self.rows, centre - half, centre + half)

    def px(self, units) -> torch.Tensor:
        """Model units -> pixels, as a B x 1 x 1 column."""
        return col(units * self.ppu)


def render(factors: dict[str, torch.Tensor], size: int, landmarks: torch.Tensor | None = None):
    """Render faces. factors: world factor name -> tensor (B); landmarks: optional model-space
    landmarks (B x 68 x 3) replacing the shape the factors imply (used to animate sequences).

    Returns (images B x 3 x S x S in [-1, 1], landmarks2d B x 68 x 2, landmarks3d B x 68 x 3)."""
    if not 32 <= size <= 256:
        raise ValueError(f"image size {size} is outside 32..256")
    f = factors
    if landmarks is None:
        coeffs = torch.stack([f[f"shape_{m}"] for m in geo.SHAPE_MODES], 1).float()
        shape = geo.neutral_shape(coeffs, f["sex"], f["age"])
        shape = shape + geo.expression_displacement(f["expression"].long(), f["intensity"].float())
    else:
        shape = geo.aux_from_landmarks(landmarks.float())
    b = shape.shape[0]
    rot = geo.rotation(f["yaw"], f["pitch"], f["roll"])
    pts = geo.project(shape, rot, f["tx"], f["ty"], f["scale"])
    axes = geo.image_axes(rot, f["scale"]) * size
    col = _colours(f)
    full = (geo.FOCAL * size * f["scale"].float())[:, None, None]
    silhouette = axes / axes.norm(dim=1, keepdim=True).clamp_min(1e-6) * full
    faces = Faces(torch.arange(b), pts[..., :2] * size, axes, torch.linalg.inv(axes),
                  axes.det().abs().sqrt(), rot, silhouette, torch.linalg.inv(silhouette), f, col)
    canvas = Canvas(_background(col["background"], size))
    for layer in (_shoulders, _hair_back, _neck, _ears, _hair, _face, _wrinkles, _fringe, _brows,
                  _eyes, _beard, _nose, _mouth, _glasses, _hat):
        layer(canvas, faces)
    image = canvas.image().clamp(0, 1) * 2 - 1
    lm3 = pts[:, : geo.N_LANDMARKS].contiguous()
    return image.contiguous(), lm3[..., :2].contiguous(), lm3


def _colours(f) -> dict[str, torch.Tensor]:
    skin = palette(SKIN, f["skin_tone"])
    hair = palette(HAIR, f["hair_colour"])
    return {
        "skin": skin, "hair": hair, "brow": hair * 0.55 + 0.02,
        "lip": skin * 0.55 + torch.tensor([0.32, 0.07, 0.08]),
        "eye": EYES[f["eye_colour"].long()], "frame": palette(FRAMES, f["glasses_colour"]),
        "beard": palette(HAIR, f["beard_colour"]) * 0.85, "hat": hsv(f["hat_colour"], 0.65, 0.62),
        "background": hsv(f["background_hue"], 0.3, 0.86),
        "shirt": hsv((f["background_hue"] + 0.45) % 1, 0.45, 0.5),
    }


def _background(colour, size):
    ramp = 1.0 - 0.25 * torch.linspace(0, 1, size)[:, None].expand(size, size)
    return colour[:, :, None, None] * ramp


def _shoulders(canvas, fc):
    c = fc.offset(geo.AUX["neck_base"], 0.0, -0.35)
    w = fc.box(canvas, c, 1.7, 0.8)
    w.paint(fc.col["shirt"], coverage(ellipse_sdf(fc.local(w.p, c), 1.7, 0.8) * fc.px(1)))
    w.commit()


def _hair_back(canvas, fc):
    fc = fc.select(fc.f["hair_style"] == 1)
    if fc is None:
        return
    c = fc.offset(geo.AUX["hair_centre"], 0.0, -0.75)
    w = fc.box(canvas, c, 1.18, 1.35, silhouette=True)
    d = box_sdf(fc.local(w.p, c, silhouette=True), 1.18, 1.35, 0.55) * fc.px(1)
    w.paint(fc.col["hair"] * 0.8, coverage(d))
    w.commit()


def _neck(canvas, fc):
    c = (fc.at(geo.AUX["neck_top"]) + fc.at(geo.AUX["neck_base"])) / 2
    w = fc.box(canvas, c, 0.42, 0.52)
    w.paint(fc.col["skin"] * 0.78, coverage(box_sdf(fc.local(w.p, c), 0.42, 0.52, 0.12) * fc.px(1)))
    w.commit()


def _ears(canvas, fc):
    for name in ("ear_r", "ear_l"):
        c = fc.at(geo.AUX[name])
        w = fc.box(canvas, c, 0.14, 0.25)
        uv = fc.local(w.p, c)
        w.paint(fc.col["skin"] * 0.85, coverage(ellipse_sdf(uv, 0.13, 0.24) * fc.px(1)))
        w.paint(fc.col["skin"] * 0.6, coverage(ellipse_sdf(uv, 0.05, 0.13) * fc.px(1)) * 0.6)
        w.commit()


def _hair(canvas, fc):
    fc = fc.select(fc.f["hair_style"] != 3)
    if fc is None:
        return
    c = fc.at(geo.AUX["hair_centre"])
    w = fc.box(canvas, fc.offset(geo.AUX["hair_centre"], 0, 0.35), 1.15, 0.6, silhouette=True)
    u, v = fc.local(w.p, c, silhouette=True)
    d = torch.maximum(ellipse_sdf((u, v), 1.14, 0.93), -0.25 - v) * fc.px(1)
    w.paint(fc.col["hair"], coverage(d))
    w.commit()


def _face(canvas, fc):
    """Skin inside the face outline, Lambert-shaded with the normal of an ellipsoid fitted to the
    face: n = R (u, v, sqrt(1 - u^2 - v^2)), (u, v) the normalised face-plane coordinates."""
    w = fc.around(canvas, FACE_OUTLINE, 0.0)
    alpha = coverage(convex_sdf(w.p, fc.xy[:, FACE_OUTLINE]))
    u, v = fc.local(w.p, fc.at(geo.AUX["face_centre"]))
    u, v = u.mul_(1 / 1.05), v.mul_(1 / 1.35)
    nz = (1 - u * u).sub_(v * v).clamp_(min=0.05).sqrt_()
    az = fc.f["light_azimuth"].float() * math.radians(55)
    light = torch.stack([torch.sin(az), torch.full_like(az, 0.35), torch.cos(az)], -1)
    light = (fc.rot.transpose(1, 2) @ (light / light.norm(dim=-1, keepdim=True))[..., None])[..., 0]
    lambert = u.mul_(col(light[:, 0])).addcmul_(v, col(light[:, 1])).addcmul_(nz, col(light[:, 2]))
    shade = lambert.clamp_(min=0).mul_(0.42).add_(0.62)
    w.paint(fc.col["skin"][:, None, None] * shade[..., None], alpha)
    w.commit()


def _wrinkles(canvas, fc):
    """Age lines: forehead furrows, crow's feet and nasolabial folds, darker with age."""
    fc = fc.select(fc.f["age"] > 0.35)
    if fc is None:
        return
    opacity = 0.6 * ((fc.f["age"].float() - 0.35) / 0.65).clamp(0, 1)
    groups = []
    segs = []
    for dv in (0.2, 0.3):
        a, m, b = fc.offset(19, 0, dv), fc.offset(27, 0, dv + 0.16), fc.offset(24, 0, dv)
        segs += [(a, m), (m, b)]
    groups.append((segs, [19, 24, 27], 0.5))
    for i, s in ((36, -1), (45, 1)):
        segs = [(fc.offset(i, 0.05 * s, 0), fc.offset(i, 0.17 * s, dv * 1.6)) for dv in (0.05, 0.0, -0.05)]
        groups.append((segs, [i], 0.2))
    for i, j, s in ((31, 48, -1), (35, 54, 1)):
        start, end = fc.offset(i, 0.08 * s, 0.02), fc.offset(j, 0.06 * s, -0.04)
        mid = (start + end) / 2 + fc.axes[:, :, 0] * 0.05 * s
        groups.append(([(start, mid), (mid, end)], [i, j], 0.12))
    for segs, anchor, margin in groups:
        w = fc.around(canvas, anchor, margin)
        a = torch.stack([s[0] for s in segs], 1)
        b = torch.stack([s[1] for s in segs], 1)
        w.paint(fc.col["skin"] * 0.62, coverage(segment_distance(w.p, a, b) - fc.px(0.016)) * col(opacity))
        w.commit()


def _fringe(canvas, fc):
    fc = fc.select(fc.f["hair_style"] == 2)
    if fc is None:
        return
    c = fc.at(geo.AUX["face_centre"])
    w = fc.around(canvas, [0, 16] + FOREHEAD, 0.02)
    u, v = fc.local(w.p, c)
    edge = 0.74 + 0.05 * torch.cos(u * 14) + 0.08 * u
    d = torch.maximum(convex_sdf(w.p, fc.xy[:, FACE_OUTLINE]), (edge - v) * fc.px(1))
    w.paint(fc.col["hair"], coverage(d))
    w.commit()


def _brows(canvas, fc):
    half = fc.px(0.045 + 0.02 * fc.f["sex"].float())
    for idx in (list(geo.RBROW), list(geo.LBROW)):
        w = fc.around(canvas, idx, 0.08)
        outline = convex_sdf(w.p, fc.xy[:, FACE_OUTLINE], SIDE_EDGES)
        brow = torch.maximum(polyline_distance(w.p, fc.xy[:, idx]) - half, outline)
        w.paint(fc.col["brow"], coverage(brow))
        w.commit()


def _eyes(canvas, fc):
    b = len(fc.rows)
    for idx in EYES_IDX:
        w = fc.around(canvas, idx, 0.12)
        eye = convex_sdf(w.p, fc.xy[:, idx])
        uv = fc.local(w.p, fc.xy[:, [idx[1], idx[2], idx[4], idx[5]]].mean(1))
        iris = ellipse_sdf(uv, 0.075, 0.075) * fc.px(1)
        pupil = ellipse_sdf(uv, 0.033, 0.033) * fc.px(1)
        w.paint(WHITE.expand(b, 3), coverage(eye))
        w.paint(fc.col["eye"], coverage(torch.maximum(iris, eye)))
        w.paint(DARK.expand(b, 3), coverage(torch.maximum(pupil, eye)))
        w.paint(DARK.expand(b, 3), coverage(polyline_distance(w.p, fc.xy[:, idx[:4]]) - fc.px(0.02)))
        lower = polyline_distance(w.p, fc.xy[:, [idx[3], idx[4], idx[5], idx[0]]]) - fc.px(0.008)
        w.paint(fc.col["skin"] * 0.55, coverage(lower) * 0.6)
        w.commit()


def _beard(canvas, fc):
    fc = fc.select(fc.f["beard"] == 1)
    if fc is None:
        return
    opacity = 0.55 + 0.4 * fc.f["beard_density"].float()
    w = fc.around(canvas, list(geo.JAW) + [33, FOREHEAD[0], FOREHEAD[-1]], 0.02)
    u, v = fc.local(w.p, fc.at(geo.AUX["face_centre"]))
    top = -0.36 + 0.42 * u * u
    d = torch.maximum(convex_sdf(w.p, fc.xy[:, FACE_OUTLINE]), (v - top) * fc.px(1))
    # no beard within 0.035 of the lips: that cut-out only reaches pixels in the lips' box
    lips, reach = fc.xy[:, list(geo.OUTER_LIP)], (0.035 * fc.ppu + 1)[:, None]
    rows, cols = w.span(lips.amin(1) - reach, lips.amax(1) + reach)
    near = (w.p[0][..., cols], w.p[1][:, rows])
    d[:, rows, cols] = torch.maximum(d[:, rows, cols], fc.px(0.035) - polygon_sdf(near, lips))
    texture = 0.72 + 0.28 * hash_noise(w.ix, w.iy)
    w.paint(fc.col["beard"][:, None, None] * (0.8 + 0.3 * texture[..., None]), coverage(d) * col(opacity) * texture)
    w.commit()


def _nose(canvas, fc):
    b, skin, yaw = len(fc.rows), fc.col["skin"], fc.f["yaw"].float()
    w = fc.around(canvas, list(geo.NOSE_BRIDGE) + list(geo.NOSE_BASE), 0.12)
    side = torch.where(fc.f["light_azimuth"] > 0, -0.07, 0.07)[:, None, None]  # shadow away from light
    bridge = fc.xy[:, list(geo.NOSE_BRIDGE)] + side * fc.axes[:, None, :, 0]
    w.paint(skin * 0.78, coverage(polyline_distance(w.p, bridge) - fc.px(0.03)) * 0.45)
    far = torch.where(yaw[:, None] > 0, fc.xy[:, 35], fc.xy[:, 31])
    profile = torch.stack([fc.xy[:, 28], fc.xy[:, 30], far], 1)
    w.paint(skin * 0.6, coverage(polyline_distance(w.p, profile) - fc.px(0.012)) * col((yaw.abs() / 25).clamp(0, 0.7)))
    w.paint(skin * 0.62, coverage(polyline_distance(w.p, fc.xy[:, list(geo.NOSE_BASE)]) - fc.px(0.013)) * 0.7)
    for a, c in ((31, 32), (35, 34)):
        d = ellipse_sdf(fc.local(w.p, 0.55 * fc.xy[:, c] + 0.45 * fc.xy[:, a]), 0.045, 0.022) * fc.px(1)
        w.paint(skin * 0.32, coverage(d) * 0.9)
    tip = ellipse_sdf(fc.local(w.p, fc.at(30)), 0.07, 0.05) * fc.px(1)
    w.paint((skin * 1.15).clamp(max=1), coverage(tip) * 0.35)
    w.commit()


def _mouth(canvas, fc):
    """Lips, the lip line, and where the inner lips part, the mouth opening with the upper teeth."""
    outer, inner = list(geo.OUTER_LIP), list(geo.INNER_LIP)
    w = fc.around(canvas, outer, 0.02)
    w.paint(fc.col["lip"], coverage(polygon_sdf(w.p, fc.xy[:, outer])))
    w.paint(fc.col["lip"] * 0.45, coverage(polyline_distance(w.p, fc.xy[:, inner[:5]]) - fc.px(0.013)))
    w.commit()
    gap = (fc.xy[:, [67, 66, 65]] - fc.xy[:, [61, 62, 63]]).norm(dim=-1).amax(1)
    fc = fc.select(gap > 0.3)
    if fc is None:
        return
    b = len(fc.rows)
    w = fc.around(canvas, inner, 0.0)
    opening = polygon_sdf(w.p, fc.xy[:, inner])
    w.paint(torch.tensor([0.22, 0.06, 0.07]).expand(b, 3), coverage(opening))
    below_mid = -fc.local(w.p, (fc.xy[:, 62] + fc.xy[:, 66]) / 2)[1] * fc.px(1)  # teeth: upper half
    w.paint(WHITE.expand(b, 3), coverage(torch.maximum(opening, below_mid)) * 0.95)
    w.commit()


def _glasses(canvas, fc):
    fc = fc.select(fc.f["glasses"] == 1)
    if fc is None:
        return
    b = len(fc.rows)
    r = 0.19 + 0.07 * fc.f["glasses_size"].float()
    th = fc.px(0.022 + 0.035 * fc.f["glasses_thickness"].float())
    square = col(fc.f["glasses_shape"] == 1)
    centres = [fc.xy[:, idx].mean(1) + 0.02 * fc.axes[:, :, 1] for idx in EYES_IDX]
    w = fc.around(canvas, list(geo.REYE) + list(geo.LEYE) + [geo.AUX["ear_r"], geo.AUX["ear_l"]], 0.3)
    rims, lenses = [], []
    for c in centres:
        uv = fc.local(w.p, c)
        shape = torch.where(square, box_sdf(uv, r * 1.12, r * 0.78, 0.3 * r), ellipse_sdf(uv, r, r)) * fc.px(1)
        lenses.append(shape)
        rims.append(shape.abs() - th / 2)
    ex = r[:, None] * fc.axes[:, :, 0]
    a = torch.stack([centres[0] + ex, centres[0] - ex, centres[1] + ex], 1)
    bb = torch.stack([centres[1] - ex, fc.at(geo.AUX["ear_r"]), fc.at(geo.AUX["ear_l"])], 1)
    arms = segment_distance(w.p, a, bb) - th / 2
    tint = fc.f["glasses_tint"].float()[:, None]  # clear lenses (0) to sunglasses (1)
    lens = torch.tensor([0.85, 0.92, 0.95]) * (1 - tint) + torch.tensor([0.08, 0.08, 0.11]) * tint
    w.paint(lens, coverage(torch.minimum(*lenses)) * col(0.18 + 0.72 * tint[:, 0]))
    w.paint(fc.col["frame"], coverage(torch.minimum(torch.minimum(*rims), arms)))
    w.commit()


def _hat(canvas, fc):
    fc = fc.select(fc.f["hat"] == 1)
    if fc is None:
        return
    c = fc.at(geo.AUX["hair_centre"])
    w = fc.box(canvas, fc.offset(geo.AUX["hair_centre"], 0, 0.66), 1.25, 0.45, silhouette=True)
    u, v = fc.local(w.p, c, silhouette=True)
    crown = torch.maximum(ellipse_sdf((u, v - 0.3), 1.1, 0.78), 0.33 - v) * fc.px(1)
    brim = box_sdf((u, v - 0.33), 1.22, 0.08, 0.06) * fc.px(1)
    band = torch.maximum(crown, (v - 0.52) * fc.px(1))
    w.paint(fc.col["hat"], coverage(crown))
    w.paint(fc.col["hat"] * 0.6, coverage(band))
    w.paint(fc.col["hat"] * 0.8, coverage(brim))
    w.commit()
