"""Mesh-only terms of the mesh world, each zero at the 68 landmarks (so the landmarks stay the
image world's): smooth identity modes the landmarks cannot see, a localised sex dimorphism
(brow ridge and glabella), registration noise on a low-dimorphism forehead band, and expression
bulges along the identity's own surface normals (Zou digest G: "scaled by identity-dependent
local geometry so that M matters"; the hip-bone substitute's localised sex effect and noisy
crest band, B.1, are carried over to the face). Amplitudes are in model units (x MM_PER_UNIT mm).

The dimorphism is large on purpose (14 mm at the glabella between a man and a woman of strength 1,
more than real faces show): at 3.5 mm (0.05 units, width 0.13) the classes were 0.8 within-class
deviations apart along their mean difference and a rank-12 PCA reconstruction erased sex (a linear
probe fell from 100 % to 74 %), so every DVAE or VAE reconstruction lost it (C: 65 % on VAE
reconstructions, OSRSR 47 %), whereas the thesis's hip bones keep it (C: 97 % on VAE
reconstructions, §4.6.2). Now d' = 2.5-2.9 and the low-rank reconstruction keeps it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from mien.data.world import geometry as geo
from mien.data.world.mesh import MM_PER_UNIT, mesh_template, operators, world_surface
from mien.data.world.mesh_surface import without_landmarks

MESH_MODES = ("cheek_fullness", "cheekbone", "forehead_slope", "temple_depth", "chin_depth")
BAND_TERMS = 9  # cos(a pi x) cos(b pi y), a, b in 0..2
BAND_NOISE = 0.012  # sd of each band coefficient (model units)
DIMORPHISM = 0.2  # brow-ridge protrusion (14 mm) of a male at strength 1, minus that of a female
DIMORPHISM_WIDTH = 0.16  # its Gaussian width in chart units (brow ridges and glabella)
TISSUE = 0.8  # largest relative change of the landmark-driven motion by the identity's soft tissue
REGIONS = ("cheeks", "forehead", "chin", "nose")
REGION_MODE = {"cheeks": "cheek_fullness", "forehead": "forehead_slope", "chin": "chin_depth", "nose": "cheekbone"}
REGION_AMPLITUDE = {"cheeks": 0.06, "forehead": 0.015, "chin": 0.04, "nose": 0.03}
# weight of each region's bulge per world motion (geo.MOTIONS); unlisted motions have none
BULGE = {"happy": {"cheeks": 1.0}, "sad": {"chin": 1.0}, "surprise": {"forehead": 1.0},
         "fear": {"forehead": 0.7, "chin": 0.3}, "disgust": {"nose": 1.0, "cheeks": 0.5, "chin": 0.6},
         "anger": {"nose": 0.5, "chin": 0.5}, "contempt": {"cheeks": 0.4}, "mouth_open": {"chin": 0.4},
         "mouth_side": {"chin": 0.3}, "brow_raise": {"forehead": 1.0}, "cheeks_puff": {"cheeks": 1.5}}


def _gauss(xy, cx, cy, sigma, bilateral=False):
    x = np.abs(xy[:, 0]) if bilateral else xy[:, 0]
    return np.exp(-((x - cx) ** 2 + (xy[:, 1] - cy) ** 2) / (2 * sigma ** 2))


def _smoothstep(x):
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _zero_at_landmarks(field: np.ndarray, size: str) -> np.ndarray:
    s = world_surface(size)
    return without_landmarks(field, s["bary"], s["bary_pinv"])


def _z(weight):
    return np.stack([np.zeros_like(weight), np.zeros_like(weight), weight], -1)


@lru_cache(maxsize=None)
def mode_fields(size: str) -> torch.Tensor:
    """(len(MESH_MODES), V, 3) displacement per unit coefficient, zero at the landmarks."""
    xy = world_surface(size)["chart"]
    out = {
        "cheek_fullness": _z(0.05 * _gauss(xy, 0.55, -0.35, 0.22, True)),
        "cheekbone": 0.04 * _gauss(xy, 0.62, 0.02, 0.15, True)[:, None] * np.stack([np.sign(xy[:, 0]), 0 * xy[:, 0], np.ones(len(xy))], 1),
        "forehead_slope": _z(-0.08 * np.clip(xy[:, 1] - 0.55, 0, None)),
        "temple_depth": _z(-0.04 * _gauss(xy, 0.85, 0.45, 0.15, True)),
        "chin_depth": _z(0.05 * _gauss(xy, 0.0, -1.0, 0.15)),
    }
    return torch.tensor(np.stack([_zero_at_landmarks(out[m], size) for m in MESH_MODES]), dtype=torch.float32)


@lru_cache(maxsize=None)
def dimorphism_field(size: str) -> torch.Tensor:
    """(V, 3) localised sex dimorphism: brow ridges and glabella forward, zero at the landmarks."""
    xy = world_surface(size)["chart"]
    ridge = np.maximum(_gauss(xy, 0.4, 0.55, DIMORPHISM_WIDTH, True), _gauss(xy, 0.0, 0.5, DIMORPHISM_WIDTH))
    return torch.tensor(_zero_at_landmarks(_z(DIMORPHISM * ridge), size), dtype=torch.float32)


@lru_cache(maxsize=None)
def band_basis(size: str) -> torch.Tensor:
    """(BAND_TERMS, V, 3) smooth depth patterns confined to the upper forehead band (y > 0.72)."""
    xy = world_surface(size)["chart"]
    band = _smoothstep((xy[:, 1] - 0.72) / 0.15)
    terms = [_z(band * np.cos(a * np.pi * xy[:, 0] / 1.12) * np.cos(b * np.pi * xy[:, 1]))
             for a in range(3) for b in range(3)]
    return torch.tensor(np.stack([_zero_at_landmarks(t, size) for t in terms]), dtype=torch.float32)


@lru_cache(maxsize=None)
def region_weights(size: str) -> torch.Tensor:
    """(len(REGIONS), V) bulge profiles: cheek pads, forehead wrinkles, chin, nasal bridge."""
    xy = world_surface(size)["chart"]
    wrinkles = _smoothstep((xy[:, 1] - 0.5) / 0.1) * _smoothstep((0.95 - xy[:, 1]) / 0.1) * np.cos(2 * np.pi * xy[:, 1] / 0.14)
    out = {"cheeks": _gauss(xy, 0.5, -0.3, 0.2, True), "forehead": wrinkles * (np.abs(xy[:, 0]) < 0.75),
           "chin": _gauss(xy, 0.0, -0.95, 0.15), "nose": _gauss(xy, 0.0, 0.15, 0.1)}
    return torch.tensor(np.stack([out[r] for r in REGIONS]), dtype=torch.float32)


def _bulge_table() -> torch.Tensor:
    table = torch.zeros(len(geo.MOTIONS), len(REGIONS))
    for m, regions in BULGE.items():
        for r, w in regions.items():
            table[geo.MOTIONS.index(m), REGIONS.index(r)] = w * REGION_AMPLITUDE[r]
    return table


BULGE_TABLE = _bulge_table()


def tissue_gain(coeffs: torch.Tensor, size: str) -> torch.Tensor:
    """(B, V) soft-tissue gain 1 + TISSUE tanh(sum_k c_k |mode_k| / max |mode_k|): where an identity's
    mesh modes push the surface (fuller cheeks, a deeper chin), the landmark-driven motion spreads
    more (or less) into it."""
    profiles = mode_fields(size).norm(dim=-1)
    profiles = profiles / profiles.amax(1, keepdim=True)
    return 1 + TISSUE * torch.tanh(coeffs.float() @ profiles)


def with_tissue(disp: torch.Tensor, coeffs: torch.Tensor, size: str) -> torch.Tensor:
    """A landmark-driven displacement (B x [T x] V x 3) scaled by the identity's tissue gain away from
    the landmarks, where it stays exact: disp + (I - B^+ B)((g - 1) disp)."""
    gain = tissue_gain(coeffs, size)
    extra = (gain[:, None] if disp.dim() == 4 else gain)[..., None] * disp - disp
    return disp + extra - operators(size)["bary_pinv"] @ mesh_template(size).landmarks(extra)


def vertex_normals(vertices: torch.Tensor, faces: np.ndarray) -> torch.Tensor:
    """Unit area-weighted vertex normals (... x V x 3) of counter-clockwise triangles."""
    f = torch.as_tensor(faces)
    a, b, c = (vertices[..., f[:, k], :] for k in range(3))
    fn = torch.linalg.cross(b - a, c - a)  # ... x F x 3
    incidence = torch.sparse_coo_tensor(torch.stack([f.reshape(-1), torch.arange(f.numel()) // 3]),
                                        torch.ones(f.numel(), dtype=fn.dtype), (vertices.shape[-2], len(f)),
                                        check_invariants=False)
    flat = fn.movedim(-2, 0).reshape(len(f), -1)  # F x (... 3)
    n = (incidence @ flat).reshape(vertices.shape[-2], *fn.shape[:-2], 3).movedim(0, -2)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def identity_terms(coeffs: torch.Tensor, sex: torch.Tensor, strength: torch.Tensor, size: str) -> torch.Tensor:
    """(B, V, 3) mm: mesh-only identity modes plus the dimorphism (male +1/2, female -1/2, times strength)."""
    modes = torch.einsum("bk,kvc->bvc", coeffs.float(), mode_fields(size))
    sign = (sex.float() - 0.5) * strength.float()
    return (modes + sign[:, None, None] * dimorphism_field(size)) * MM_PER_UNIT


def band_noise(coeffs: torch.Tensor, size: str) -> torch.Tensor:
    """(B, V, 3) mm registration noise from (B, BAND_TERMS) standard-normal coefficients."""
    return BAND_NOISE * MM_PER_UNIT * torch.einsum("bk,kvc->bvc", coeffs.float(), band_basis(size))


def expression_bulge(neutral: torch.Tensor, motion: torch.Tensor, intensity: torch.Tensor,
                     coeffs: torch.Tensor, size: str) -> torch.Tensor:
    """Bulges (B x V x 3, or B x T x V x 3 for intensities B x T) in mm along the normals of the
    identity's neutral mesh (B x V x 3): intensity x table[motion, r] x (1 + 0.8 c_r) x profile_r,
    c_r the identity's coefficient of the mode tied to region r, then made zero at the landmarks."""
    s = world_surface(size)
    normals = vertex_normals(neutral, s["faces"][0])
    ties = torch.stack([coeffs[:, MESH_MODES.index(REGION_MODE[r])] for r in REGIONS], 1).float()
    gain = BULGE_TABLE[motion] * (1 + 0.8 * ties).clamp_min(0.1)  # B x R
    profile = torch.einsum("br,rv->bv", gain, region_weights(size))[..., None] * normals  # B x V x 3
    profile = profile - operators(size)["bary_pinv"] @ mesh_template(size).landmarks(profile)  # (I - B^+ B) profile
    scale = intensity.float()[..., None, None] * MM_PER_UNIT
    return scale * (profile[:, None] if intensity.dim() == 2 else profile)
