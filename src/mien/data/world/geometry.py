"""Geometry of the procedural face world: a 68-point 3-D template in iBUG/dlib order, identity
modes, expression fields, pose and a weak-perspective camera.

3-D landmarks = template + sum_k s_k * identity_mode_k + intensity * expression_field (all linear),
then rotated by pose and projected: u = 0.5 + tx + f * (R X)_x, v = V0 + ty - f * (R X)_y with
f = FOCAL * scale. Model units: x to the subject's left (image right), y up, z towards the camera;
the face is about 2 units wide. Besides the 68 landmarks the model carries auxiliary points
(forehead outline, ears, head and hair anchors) that the renderer needs; they are a fixed linear
function of the landmarks (:func:`aux_from_landmarks`), so any landmark set can be rendered.
"""

from __future__ import annotations

import math

import numpy as np
import torch

N_LANDMARKS = 68
JAW, RBROW, LBROW = range(0, 17), range(17, 22), range(22, 27)
NOSE_BRIDGE, NOSE_BASE = range(27, 31), range(31, 36)
REYE, LEYE = range(36, 42), range(42, 48)
OUTER_LIP, INNER_LIP = range(48, 60), range(60, 68)

FOCAL = 0.31  # image fraction per model unit at scale 1
V0 = 0.53  # vertical image position of the model origin


def _template_landmarks() -> np.ndarray:
    p = np.zeros((N_LANDMARKS, 3))
    a = np.linspace(0.0, math.pi, 17)  # jaw, from the subject's right ear (image left) over the chin
    p[JAW, 0] = -np.cos(a) * (0.96 - 0.12 * np.sin(a) ** 6)
    p[JAW, 1] = 0.18 - 1.33 * np.sin(a) ** 1.15
    p[JAW, 2] = -0.55 * np.cos(a) ** 2 + 0.1
    brow_x = np.array([-0.80, -0.66, -0.50, -0.34, -0.18])
    brow_y = np.array([0.40, 0.47, 0.49, 0.47, 0.43])
    brow_z = np.array([-0.08, 0.06, 0.14, 0.19, 0.22])
    p[RBROW] = np.stack([brow_x, brow_y, brow_z], 1)
    p[LBROW] = np.stack([-brow_x[::-1], brow_y[::-1], brow_z[::-1]], 1)
    p[NOSE_BRIDGE] = [[0, 0.28, 0.22], [0, 0.10, 0.33], [0, -0.08, 0.45], [0, -0.25, 0.58]]
    p[NOSE_BASE] = [[-0.18, -0.36, 0.32], [-0.09, -0.40, 0.40], [0, -0.42, 0.44],
                    [0.09, -0.40, 0.40], [0.18, -0.36, 0.32]]
    reye = np.array([[-0.64, 0.20, 0.00], [-0.53, 0.27, 0.09], [-0.38, 0.27, 0.11],
                     [-0.26, 0.20, 0.10], [-0.38, 0.14, 0.10], [-0.53, 0.14, 0.08]])
    p[REYE] = reye
    p[LEYE] = reye[[3, 2, 1, 0, 5, 4]] * [-1, 1, 1]
    p[OUTER_LIP] = [[-0.44, -0.67, 0.20], [-0.28, -0.585, 0.30], [-0.12, -0.54, 0.36],
                    [0.00, -0.565, 0.37], [0.12, -0.54, 0.36], [0.28, -0.585, 0.30],
                    [0.44, -0.67, 0.20], [0.28, -0.80, 0.28], [0.12, -0.865, 0.33],
                    [0.00, -0.875, 0.34], [-0.12, -0.865, 0.33], [-0.28, -0.80, 0.28]]
    p[INNER_LIP] = [[-0.37, -0.67, 0.22], [-0.13, -0.66, 0.32], [0.00, -0.66, 0.33],
                    [0.13, -0.66, 0.32], [0.37, -0.67, 0.22], [0.13, -0.69, 0.32],
                    [0.00, -0.69, 0.33], [-0.13, -0.69, 0.32]]
    return p


# Auxiliary points: name -> index into the aux block.
_FOREHEAD_N = 9
AUX_NAMES = (
    [f"forehead{i}" for i in range(_FOREHEAD_N)]
    + ["ear_r", "ear_l", "head_top", "face_centre", "neck_top", "neck_base", "hair_centre"]
)
AUX = {name: N_LANDMARKS + i for i, name in enumerate(AUX_NAMES)}
N_POINTS = N_LANDMARKS + len(AUX_NAMES)


def _template_aux() -> np.ndarray:
    a = np.linspace(0.0, math.pi, _FOREHEAD_N + 2)[1:-1]  # forehead arc from image right to left
    forehead = np.stack([0.97 * np.cos(a), 0.18 + 0.86 * np.sin(a) ** 0.9, -0.5 * np.cos(a) ** 2 + 0.12], 1)
    rest = np.array([
        [-1.00, 0.05, -0.55],  # ear_r
        [1.00, 0.05, -0.55],  # ear_l
        [0.00, 1.08, -0.10],  # head_top
        [0.00, -0.10, 0.20],  # face_centre
        [0.00, -0.95, -0.30],  # neck_top
        [0.00, -1.75, -0.30],  # neck_base
        [0.00, 0.35, -0.30],  # hair_centre
    ])
    return np.concatenate([forehead, rest], 0)


def _points_weight(idx, n=N_POINTS):
    w = np.zeros(n)
    w[list(idx)] = 1.0
    return w[:, None]


def _identity_modes(t: np.ndarray) -> dict[str, np.ndarray]:
    """Displacement fields, one per unit of each identity shape mode (N_POINTS x 3)."""
    x, y = t[:, 0:1], t[:, 1:2]
    lm = np.arange(N_POINTS)[:, None] < N_LANDMARKS
    outline = _points_weight(list(JAW) + [AUX[f"forehead{i}"] for i in range(_FOREHEAD_N)]
                             + [AUX["ear_r"], AUX["ear_l"]])
    lower_jaw = _points_weight(range(3, 14)) * np.clip(-y, 0, None)
    eyes = _points_weight(list(REYE) + list(LEYE))
    brows = _points_weight(list(RBROW) + list(LBROW))
    mouth = _points_weight(list(OUTER_LIP) + list(INNER_LIP))
    nose_tip = _points_weight([30, 31, 32, 33, 34, 35])
    eye_centre = np.where(x < 0, t[list(REYE)].mean(0), t[list(LEYE)].mean(0))
    zeros = np.zeros_like(t)

    def field(dx=0.0, dy=0.0, dz=0.0):
        return np.concatenate([zeros[:, :1] + dx, zeros[:, :1] + dy, zeros[:, :1] + dz], 1)

    chin_drop = _points_weight(range(4, 13)) * np.clip(-y - 0.5, 0, None) + 0.3 * mouth
    upper_lip = _points_weight([49, 50, 51, 52, 53])
    lower_lip = _points_weight([55, 56, 57, 58, 59])
    return {
        "face_width": field(dx=0.07 * x * (outline + 0.3 * lm * (1 - outline))),
        "jaw_width": field(dx=0.12 * x * lower_jaw),
        "face_length": field(dy=-0.10 * chin_drop),
        "eye_spacing": field(dx=0.045 * np.sign(x) * (eyes + 0.5 * brows)),
        "eye_size": 0.14 * eyes * (t - eye_centre) * [1, 1, 0],
        "nose_length": field(dy=-0.06 * nose_tip, dz=0.03 * _points_weight([30])),
        "nose_width": field(dx=0.3 * x * _points_weight(NOSE_BASE)),
        "mouth_width": field(dx=0.14 * x * mouth),
        "lip_thickness": field(dy=0.025 * upper_lip - 0.035 * lower_lip),
        "brow_height": field(dy=0.045 * brows),
    }


SHAPE_MODES = ("face_width", "jaw_width", "face_length", "eye_spacing", "eye_size",
               "nose_length", "nose_width", "mouth_width", "lip_thickness", "brow_height")

EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
ACTIONS = ("mouth_open", "mouth_side", "brow_raise", "cheeks_puff")


def _mirror(d: dict[int, tuple]) -> dict[int, tuple]:
    """Add the left/right mirror image of landmark displacements given for the subject's right."""
    mirror = {}
    pairs = {**{i: 16 - i for i in JAW}, **{17 + i: 26 - i for i in range(5)},
             31: 35, 32: 34, 36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46,
             48: 54, 49: 53, 50: 52, 59: 55, 58: 56, 60: 64, 61: 63, 67: 65}
    pairs.update({v: k for k, v in pairs.items()})
    for i, (dx, dy, *dz) in d.items():
        mirror[i] = (dx, dy, *dz)
        j = pairs.get(i, i)
        if j != i:
            mirror[j] = (-dx, dy, *dz)
    return mirror


def _field(d: dict[int, tuple], symmetric=True) -> np.ndarray:
    f = np.zeros((N_POINTS, 3))
    for i, v in (_mirror(d) if symmetric else d).items():
        f[i, : len(v)] = v
    return f


def _jaw_drop(amount: float, corners_in: float = 0.0) -> dict[int, tuple]:
    """Open the mouth by lowering the jaw, chin and lower lips (right side given, mirrored)."""
    d = {8: (0, -amount), 7: (0, -0.93 * amount), 6: (0, -0.75 * amount), 5: (0, -0.45 * amount),
         4: (0, -0.15 * amount), 57: (0, -amount), 58: (0, -0.97 * amount), 59: (0, -0.8 * amount),
         66: (0, -0.95 * amount), 67: (0, -0.9 * amount), 48: (corners_in, -0.4 * amount),
         60: (corners_in * 1.1, -0.45 * amount)}
    return d


def _expression_fields() -> dict[str, np.ndarray]:
    """3-D displacement fields at intensity 1 (model units), right side given and mirrored."""
    happy = {48: (-0.10, 0.17, -0.03), 49: (-0.06, 0.09), 50: (-0.01, 0.04), 51: (0, 0.04),
             60: (-0.09, 0.16, -0.03), 61: (-0.03, 0.05), 62: (0, 0.05),
             59: (-0.06, 0.03), 58: (-0.01, -0.07), 57: (0, -0.08), 67: (-0.04, -0.06), 66: (0, -0.09),
             40: (0, 0.045), 41: (0, 0.045), 37: (0, -0.015), 38: (0, -0.015), 4: (-0.02, 0.03), 3: (-0.02, 0.03)}
    sad = {48: (0.03, -0.14), 60: (0.03, -0.12), 49: (0.01, -0.05), 59: (0.01, -0.03),
           58: (0, 0.03), 57: (0, 0.04), 8: (0, 0.03),
           21: (0.03, 0.15), 20: (0.02, 0.10), 19: (0, 0.03), 18: (0, -0.03), 17: (0, -0.07),
           37: (0, -0.04), 38: (0, -0.05), 36: (0, -0.02)}
    surprise = {**_jaw_drop(0.28, corners_in=0.09), 49: (0.03, 0.03), 50: (0, 0.04), 51: (0, 0.04),
                61: (0.03, 0.03), 62: (0, 0.03),
                17: (0, 0.14), 18: (0, 0.19), 19: (0, 0.21), 20: (0, 0.19), 21: (0, 0.15),
                37: (0, 0.07), 38: (0, 0.07), 40: (0, -0.02), 41: (0, -0.02)}
    fear = {**_jaw_drop(0.14, corners_in=-0.08), 48: (-0.11, -0.07), 60: (-0.10, -0.06),
            49: (-0.04, -0.01), 59: (-0.05, -0.05), 67: (-0.03, -0.05),
            17: (0, 0.05), 18: (0.01, 0.09), 19: (0.03, 0.12), 20: (0.04, 0.15), 21: (0.06, 0.17),
            37: (0, 0.07), 38: (0, 0.07), 40: (0, 0.01), 41: (0, 0.01)}
    disgust = {49: (0, 0.10), 50: (0, 0.13), 51: (0, 0.11), 61: (0, 0.10), 62: (0, 0.09),
               48: (0.02, -0.05), 60: (0.02, -0.03), 58: (0, -0.05), 57: (0, -0.05), 59: (0, -0.04),
               31: (-0.04, 0.07), 32: (-0.01, 0.05), 33: (0, 0.04), 30: (0, 0.03),
               17: (0, -0.05), 18: (0, -0.06), 19: (0.01, -0.08), 20: (0.03, -0.09), 21: (0.04, -0.10),
               40: (0, 0.05), 41: (0, 0.05), 37: (0, -0.03), 38: (0, -0.03)}
    anger = {21: (0.07, -0.17), 20: (0.05, -0.13), 19: (0.02, -0.07), 18: (0, -0.02), 17: (0, 0.02),
             37: (0, -0.02), 38: (0, -0.03), 40: (0, 0.03), 41: (0, 0.025),
             48: (0.06, -0.02), 60: (0.06, -0.015), 49: (0.04, -0.03), 50: (0, -0.035), 51: (0, -0.035),
             59: (0.04, 0.04), 58: (0, 0.05), 57: (0, 0.05), 61: (0.03, -0.015), 67: (0.03, 0.015)}
    contempt = {54: (0.10, 0.12, -0.04), 64: (0.09, 0.11, -0.04), 53: (0.05, 0.06), 55: (0.05, 0.05),
                63: (0.03, 0.05), 65: (0.03, 0.04), 52: (0.015, 0.02), 56: (0.015, 0.015),
                46: (0, 0.02), 47: (0, 0.015), 13: (0.02, 0.02)}
    fields = {"neutral": np.zeros((N_POINTS, 3)), "happy": _field(happy), "sad": _field(sad),
              "surprise": _field(surprise), "fear": _field(fear), "disgust": _field(disgust),
              "anger": _field(anger), "contempt": _field(contempt, symmetric=False)}
    return fields


def _action_fields() -> dict[str, np.ndarray]:
    """Facial actions used by the 4D sequences besides the emotions."""
    mouth_side = {i: (0.12, 0.0) for i in list(OUTER_LIP) + list(INNER_LIP)}
    mouth_side.update({54: (0.15, 0.02), 64: (0.14, 0.02), 48: (0.08, -0.01), 60: (0.08, -0.01)})
    cheeks = {2: (-0.07, 0), 3: (-0.09, 0), 4: (-0.09, 0), 5: (-0.07, 0), 6: (-0.04, 0),
              48: (0.05, 0, 0.04), 60: (0.05, 0, 0.04), 49: (0.03, 0, 0.05), 59: (0.03, 0, 0.05),
              61: (0.02, -0.01), 67: (0.02, 0.01)}
    return {
        "mouth_open": _field(_jaw_drop(0.28, corners_in=0.03)),
        "mouth_side": _field(mouth_side, symmetric=False),
        "brow_raise": _field({17: (0, 0.10), 18: (0, 0.12), 19: (0, 0.13), 20: (0, 0.12), 21: (0, 0.10),
                              37: (0, 0.02), 38: (0, 0.02)}),
        "cheeks_puff": _field(cheeks),
    }


def _sex_field(t: np.ndarray) -> np.ndarray:
    """Sex-dimorphic shape (male = +1): wider jaw, lower heavier brows, larger nose, thinner lips."""
    x, y = t[:, 0:1], t[:, 1:2]
    jaw = _points_weight(range(2, 15)) * np.clip(-y, 0, None)
    f = np.zeros_like(t)
    f[:, 0:1] += 0.06 * x * jaw
    f[:, 1:2] += -0.03 * _points_weight(list(RBROW) + list(LBROW))
    f[:, 1:2] += -0.03 * _points_weight(NOSE_BASE)
    f[:, 0:1] += 0.12 * x * _points_weight(NOSE_BASE)
    f[:, 1:2] += -0.015 * _points_weight([49, 50, 51, 52, 53]) + 0.015 * _points_weight([55, 56, 57, 58, 59])
    f[:, 1:2] += -0.04 * _points_weight([7, 8, 9])
    return f


def _age_field(t: np.ndarray) -> np.ndarray:
    """Ageing (age 0 -> 1): sagging jaw line and lower brows."""
    y = t[:, 1:2]
    f = np.zeros_like(t)
    f[:, 1:2] += -0.04 * _points_weight(range(3, 14)) * np.clip(-y, 0, None)
    f[:, 1:2] += -0.025 * _points_weight(list(RBROW) + list(LBROW))
    f[:, 1:2] += -0.02 * _points_weight([48, 54, 60, 64])
    return f


TEMPLATE = np.concatenate([_template_landmarks(), _template_aux()], 0)
_MODES = _identity_modes(TEMPLATE)
_EXPR = _expression_fields()
_ACTIONS = _action_fields()
MOTIONS = EXPRESSIONS + ACTIONS  # every displacement field, emotions first

template = torch.tensor(TEMPLATE, dtype=torch.float32)
identity_basis = torch.tensor(np.stack([_MODES[m] for m in SHAPE_MODES]), dtype=torch.float32)
sex_field = torch.tensor(_sex_field(TEMPLATE), dtype=torch.float32)
age_field = torch.tensor(_age_field(TEMPLATE), dtype=torch.float32)
motion_fields = torch.tensor(np.stack([{**_EXPR, **_ACTIONS}[m] for m in MOTIONS]), dtype=torch.float32)


def neutral_shape(shape_coeffs: torch.Tensor, sex: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
    """Identity points (B x N_POINTS x 3): template + modes + sex and age fields."""
    pts = template + torch.einsum("bk,kpc->bpc", shape_coeffs, identity_basis)
    return pts + sex.float()[:, None, None] * sex_field + age.float()[:, None, None] * age_field


def expression_displacement(motion: torch.Tensor, intensity: torch.Tensor) -> torch.Tensor:
    """intensity x field of the motion class (index into MOTIONS); intensity may be B or B x F."""
    field = motion_fields[motion]  # B x P x 3
    if intensity.dim() == 2:
        return intensity[..., None, None] * field[:, None]
    return intensity[:, None, None] * field


def rotation(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """R = Rz(roll) Rx(pitch) Ry(yaw), angles in degrees; positive yaw turns the face to image right,
    positive pitch tilts it up, positive roll tilts it clockwise in the image."""
    y, p, r = (torch.deg2rad(a.float()) for a in (yaw, pitch, roll))
    o, z = torch.ones_like(y), torch.zeros_like(y)
    ry = torch.stack([torch.cos(y), z, torch.sin(y), z, o, z, -torch.sin(y), z, torch.cos(y)], -1)
    rx = torch.stack([o, z, z, z, torch.cos(p), -torch.sin(p), z, torch.sin(p), torch.cos(p)], -1)
    rz = torch.stack([torch.cos(r), torch.sin(r), z, -torch.sin(r), torch.cos(r), z, z, z, o], -1)
    shape = y.shape + (3, 3)
    return rz.reshape(shape) @ rx.reshape(shape) @ ry.reshape(shape)


def project(points: torch.Tensor, rot: torch.Tensor, tx, ty, scale) -> torch.Tensor:
    """Weak-perspective camera: model points (B x P x 3) -> image points (B x P x 3), x and y in
    [0, 1] image coordinates (y down), z towards the camera in the same units."""
    f = FOCAL * scale.float()[:, None]
    cam = points @ rot.transpose(-1, -2)
    u = 0.5 + tx.float()[:, None] + f * cam[..., 0]
    v = V0 + ty.float()[:, None] - f * cam[..., 1]
    return torch.stack([u, v, f * cam[..., 2]], -1)


def image_axes(rot: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Image-space images of the model x and y unit vectors, as columns of a B x 2 x 2 matrix."""
    f = FOCAL * scale.float()[:, None, None]
    return f * torch.stack([rot[:, 0, :2], -rot[:, 1, :2]], 1)


def _aux_regressor() -> torch.Tensor:
    """W with aux = W @ landmarks for every shape of the linear model (exact on the model's span)."""
    basis = [TEMPLATE] + [_MODES[m] for m in SHAPE_MODES] + [_sex_field(TEMPLATE), _age_field(TEMPLATE)]
    basis += [f for f in list(_EXPR.values())[1:] + list(_ACTIONS.values())]
    rng = np.random.default_rng(0)
    coeffs = np.concatenate([np.ones((400, 1)), rng.normal(size=(400, len(basis) - 1))], 1)
    shapes = np.einsum("nk,kpc->npc", coeffs, np.stack(basis))
    lm = shapes[:, :N_LANDMARKS].reshape(400, -1)
    aux = shapes[:, N_LANDMARKS:].reshape(400, -1)
    lm1 = np.concatenate([lm, np.ones((400, 1))], 1)
    w, *_ = np.linalg.lstsq(lm1, aux, rcond=None)
    return torch.tensor(w, dtype=torch.float32)


_AUX_W = _aux_regressor()


def aux_from_landmarks(landmarks3d: torch.Tensor) -> torch.Tensor:
    """Complete model-space landmarks (... x 68 x 3) with the auxiliary points (... x N_POINTS x 3)."""
    flat = landmarks3d.reshape(*landmarks3d.shape[:-2], -1)
    flat1 = torch.cat([flat, torch.ones_like(flat[..., :1])], -1)
    aux = (flat1 @ _AUX_W).reshape(*landmarks3d.shape[:-2], -1, 3)
    return torch.cat([landmarks3d, aux], -2)
