"""Mesh data sets of the world (design.md sample dicts; Zou thesis ch. 4 and §3.7):

- :class:`MeshDataset` (``source: meshes``, the DVAE data): one mesh per subject-expression with the
  subject's sex as ``label``; ``male_fraction`` fixes the share of men exactly (the thesis's data:
  470 of 752, MALE_FRACTION_THESIS).
- :class:`MeshSequenceDataset` (``source: mesh_sequences``, CoMA-like): subjects x motions, each a
  neutral-apex-neutral sequence of ``frames`` meshes driven by the world's intensity curves
  (sequences.py), with the barycentric landmarks of every frame.

Every draw is a pure function of (seed, index), as in the image world (factors.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mien.data.factors import Factor
from mien.data.world import geometry as geo
from mien.data.world.factors import IDENTITY_FACTORS, IID, uniforms
from mien.data.world.mesh import mesh_template, points_to_mesh, procrustes
from mien.data.world.mesh_fields import BAND_TERMS, MESH_MODES, band_noise, expression_bulge, identity_terms, with_tissue
from mien.data.world.sequences import SEQUENCE_CLASSES, intensity_curve
from mien.errors import ConfigError

MALE_FRACTION_THESIS = 470 / 752
# CoMA-like motions: the world's 11 sequence classes and a stronger mouth opening; name -> (world motion, gain)
MESH_MOTIONS = {**{c: (c, 1.0) for c in SEQUENCE_CLASSES}, "mouth_extreme": ("mouth_open", 1.4)}
_ID = 1 << 40  # identity draws live in their own index space (factors.py)
MESH_FACTORS = ([Factor(f"mesh_{m}", "continuous", range=(-2.5, 2.5), group="identity") for m in MESH_MODES]
                + [Factor("sex_strength", "continuous", range=(0.5, 1.5), group="identity")])


def _normal(seed, index, stream):
    return torch.special.ndtri(uniforms(seed, index, stream).clamp(1e-12, 1 - 1e-12)).float()


def mesh_identity(seed: int, identity: np.ndarray) -> dict[str, torch.Tensor]:
    """Mesh-only identity factors: mode coefficients (B x len(MESH_MODES)) and dimorphism strength."""
    ident = np.asarray(identity, dtype=np.int64) + _ID
    coeffs = torch.stack([_normal(seed, ident, 300 + k).clamp(-2.5, 2.5) for k in range(len(MESH_MODES))], 1)
    return {"coeffs": coeffs, "strength": 0.5 + uniforms(seed, ident, 310).float()}


def balanced_sex(seed: int, n_subjects: int, male_fraction: float) -> torch.Tensor:
    """Sex (1 = male) of subjects 0..n-1 with exactly round(male_fraction * n) men, seeded."""
    order = np.argsort(uniforms(seed, np.arange(n_subjects) + _ID, 330).numpy(), kind="stable")
    sex = torch.zeros(n_subjects, dtype=torch.long)
    sex[torch.from_numpy(order[: round(male_fraction * n_subjects)])] = 1
    return sex


def synthesize(f: dict, mesh_id: dict, noise: torch.Tensor, motion: torch.Tensor, intensity: torch.Tensor,
               size: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(neutral B x V x 3, expressive B x [T x] V x 3) meshes in mm from world factors ``f`` (shape_*,
    sex, age), mesh identity factors, band-noise coefficients, world motion indices and intensities."""
    shape = torch.stack([f[f"shape_{m}"] for m in geo.SHAPE_MODES], 1).float()
    points = geo.neutral_shape(shape, f["sex"], f["age"])
    neutral = (points_to_mesh(points, size) + identity_terms(mesh_id["coeffs"], f["sex"], mesh_id["strength"], size)
               + band_noise(noise, size))
    disp = with_tissue(points_to_mesh(geo.expression_displacement(motion, intensity), size, ring=False),
                       mesh_id["coeffs"], size)
    bulge = expression_bulge(neutral, motion, intensity, mesh_id["coeffs"], size)
    return neutral, (neutral[:, None] if intensity.dim() == 2 else neutral) + disp + bulge


def factor_values(f: dict, mesh_id: dict, names: set) -> dict[str, torch.Tensor]:
    """The named world and mesh identity factors of a batch (floats, or int64 codes)."""
    f = {**f, **{f"mesh_{m}": mesh_id["coeffs"][:, k] for k, m in enumerate(MESH_MODES)},
         "sex_strength": mesh_id["strength"]}
    return {k: (v.float() if v.is_floating_point() else v.long()) for k, v in f.items() if k in names}


def subject_meshes(seed: int, subjects, expression, intensity, sex=None, size: str = "small") -> torch.Tensor:
    """Meshes (B x V x 3, mm) of chosen subjects (their identity as the world draws it from ``seed``)
    making world expressions (indices into geo.EXPRESSIONS) at intensities; ``sex`` overrides theirs."""
    subjects = np.asarray(subjects, dtype=np.int64).reshape(-1)
    f = IID().draw(seed, subjects)
    if sex is not None:
        f["sex"] = torch.as_tensor(sex, dtype=torch.long).expand(len(subjects)).clone()
    noise = torch.stack([_normal(seed, subjects + _ID, 320 + k) for k in range(BAND_TERMS)], 1)
    motion = torch.as_tensor(expression, dtype=torch.long).expand(len(subjects))
    level = torch.as_tensor(intensity, dtype=torch.float32).expand(len(subjects))
    return synthesize(f, mesh_identity(seed, subjects), noise, motion, level, size)[1]


class _Batched(Dataset):
    """Items built a batch at a time (``batch``), like the image world's data set."""

    def __getitems__(self, indices) -> list[dict]:
        b = self.batch(indices)
        return [{k: ({n: t[i] for n, t in v.items()} if isinstance(v, dict) else v[i]) for k, v in b.items()}
                for i in range(len(indices))]

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])[0]

    def _check(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"index out of range for a data set of {len(self)} items")
        return idx


class MeshDataset(_Batched):
    """``n`` world face meshes: ``mesh`` (V x 3, mm, rigidly Procrustes-aligned to the template, as
    the thesis's meshes are; departure: no scale, since size is part of the dimorphism), ``label``
    (sex, 1 = male), ``identity``, ``factors``. Subjects are the items, or a pool of ``n_identities`` drawn per item; the world's
    expression and intensity vary per item. ``male_fraction`` None draws sex i.i.d. (p = 1/2)."""

    def __init__(self, n: int, seed: int = 0, size: str = "small", male_fraction: float | None = None,
                 n_identities: int | None = None):
        if n < 1:
            raise ConfigError(f"n={n}: a mesh data set needs at least one mesh")
        if male_fraction is not None and not 0 <= male_fraction <= 1:
            raise ConfigError(f"male_fraction={male_fraction} must lie in [0, 1] (the thesis's data: {MALE_FRACTION_THESIS:.3f})")
        self.n, self.seed, self.size, self.male_fraction = int(n), int(seed), size, male_fraction
        self.template = mesh_template(size)
        self.design = IID(n_identities=n_identities)
        self.n_subjects = n_identities or self.n
        keep = set(IDENTITY_FACTORS) | {"identity", "expression", "intensity"}
        self.factors: list[Factor] = [f for f in self.design.factors() if f.name in keep] + MESH_FACTORS

    def __len__(self) -> int:
        return self.n

    def batch(self, indices) -> dict:
        idx = self._check(indices)
        f = self.design.draw(self.seed, idx)
        ident = f["identity"].numpy() if "identity" in f else idx
        if self.male_fraction is not None:
            f["sex"] = balanced_sex(self.seed, self.n_subjects, self.male_fraction)[torch.from_numpy(ident)]
        mesh_id = mesh_identity(self.seed, ident)
        noise = torch.stack([_normal(self.seed, idx, 320 + k) for k in range(BAND_TERMS)], 1)
        _, mesh = synthesize(f, mesh_id, noise, f["expression"].long(), f["intensity"].float(), self.size)
        return {"mesh": procrustes(mesh, self.template.vertices), "label": f["sex"].long(), "identity": torch.as_tensor(ident, dtype=torch.long),
                "factors": factor_values(f, mesh_id, {fac.name for fac in self.factors})}


class MeshSequenceDataset(_Batched):
    """CoMA-like sequences: item i is subject i // motions doing motion i % motions (MESH_MOTIONS),
    ``frames`` meshes from neutral to apex (first half, N2E ramp) and back (second half, E2N).
    Items: ``mesh`` (T x V x 3), ``neutral`` (V x 3), ``landmarks`` (T x 68 x 3), ``neutral_landmarks``,
    ``subject``, ``motion``, ``factors`` (the subject's identity factors). ``n`` (at most subjects x motions) keeps the first n items."""

    def __init__(self, subjects: int = 12, motions: int = 12, frames: int = 40, seed: int = 0,
                 size: str = "small", n: int | None = None):
        if not 1 <= motions <= len(MESH_MOTIONS):
            raise ConfigError(f"motions={motions}: the mesh world has 1..{len(MESH_MOTIONS)} motions")
        if subjects < 1 or frames < 4:
            raise ConfigError(f"subjects={subjects}, frames={frames}: use at least 1 subject and 4 frames")
        self.subjects, self.motions, self.frames, self.seed, self.size = subjects, motions, frames, int(seed), size
        self.n = min(n or subjects * motions, subjects * motions)
        self.template = mesh_template(size)
        self.motion_names = tuple(MESH_MOTIONS)[:motions]
        grid = [("subject", tuple(str(s) for s in range(subjects)), "identity"), ("motion", self.motion_names, "expression")]
        self.factors = ([Factor(name, "categorical", values=values, group=g) for name, values, g in grid if len(values) > 1]
                        + [f for f in IID().factors() if f.name in IDENTITY_FACTORS] + MESH_FACTORS)

    def __len__(self) -> int:
        return self.n

    def intensity(self, idx: np.ndarray) -> torch.Tensor:
        """(B x T) neutral-apex-neutral intensity of the items: the world's N2E ramp then its E2N ramp."""
        u = [uniforms(self.seed, idx, 400 + k).float() for k in range(3)]
        peak, onset, duration = 0.7 + 0.3 * u[0], 0.05 + 0.3 * u[1], 0.3 + 0.3 * u[2]
        rise = self.frames // 2
        up = intensity_curve(rise, torch.zeros(len(idx), dtype=torch.long), peak, onset, duration)
        down = intensity_curve(self.frames - rise, torch.ones(len(idx), dtype=torch.long), peak, 1 - onset - duration, duration)
        return torch.cat([up, down], 1)

    def batch(self, indices) -> dict:
        idx = self._check(indices)
        subject, motion = idx // self.motions, idx % self.motions
        f = IID().draw(self.seed, subject)
        world, gain = zip(*(MESH_MOTIONS[self.motion_names[m]] for m in motion))
        world_motion = torch.tensor([geo.MOTIONS.index(w) for w in world])
        curve = self.intensity(idx) * torch.tensor(gain)[:, None]
        noise = torch.stack([_normal(self.seed, subject + _ID, 320 + k) for k in range(BAND_TERMS)], 1)
        mesh_id = mesh_identity(self.seed, subject)
        neutral, mesh = synthesize(f, mesh_id, noise, world_motion, curve, self.size)
        return {"mesh": mesh, "neutral": neutral, "landmarks": self.template.landmarks(mesh),
                "neutral_landmarks": self.template.landmarks(neutral),
                "subject": torch.from_numpy(subject), "motion": torch.from_numpy(motion),
                "factors": factor_values(f, mesh_id, {fac.name for fac in self.factors})}
