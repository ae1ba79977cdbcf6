"""Z2, the landmark-guided mesh decoder (Zou thesis §3.4.3, Eq. 3.11, §3.7, Tab. 3.5; digest A.6),
and the baselines of Tab. 3.5 on the same data and loss, one family with a ``variant``:

- ``proposed``: five spiral layers on the neutral mesh M give the tokens F (coarsest-level vertex
  features, d = widths[-1]); the landmark displacement dL_f queries them,
  a = softmax(FC(dL_f) F^T / sqrt(d)) F (Eq. 3.11); z_id = Linear(a) has the size 3N of dL_f and
  z = lambda z_id + dL_f with a learnable lambda (initialised to 1); one linear layer and five
  spiral layers decode dM_f, and M_f = M + dM_f frame by frame. Departure (the thesis gives no
  initialisation): the map to z_id starts at zero, so Z2 starts as the ``s2d`` decoder and the
  attention branch enters only as far as it lowers the loss (a random map adds a random function
  of dL_f to z at the start, and training then turned lambda down, from 1 to 0.32).
- ``s2d``: the same decoder on z = dL_f alone (the Sparse2Dense decoder of Otberdout et al. 2022,
  the thesis's "w/o attention" row: no neutral-mesh conditioning).
- ``coma``: CoMA (Ranjan et al. 2018): a Chebyshev (K = 6) encoder of M with the hierarchy's
  pooling to a code of ``latent`` values; its decoder (a linear layer and five Chebyshev layers with
  up-sampling) consumes [code, dL_f] (§3.7.1: "the concatenation of the latent representation with
  dL_f").
- ``linear``: the autoencoder of [29]: linear, ELU, linear to a code of ``latent`` values and back,
  its decoder consuming [code, dL_f].

Loss (the S2D loss [175], as EmoVOCA's ES2D writes it): mean_v w_v |M^_f - M_f| +
``displacement_weight`` * mean |dM^_f - dM_f|, L1 per coordinate, with per-vertex weights w
(mean 1) and ``displacement_weight`` = 0.1. Departures, named: S2D's weights emphasise the face's
expressive regions by a hand-made mask; here w_v = 1 + m_v / mean(m), renormalised to mean 1,
where m_v is the mean displacement magnitude of vertex v in the first training batch (fit_data),
so moving regions weigh up to about twice as much. Since M^_f = M + dM^_f, the two terms are both
L1 terms on the same residual, one weighted. Inputs are normalised (M by the first batch's mean
mesh and its spread, at least 1 mm; dL_f and dM_f by the spread of dL_f); the thesis gives no widths, spiral length,
pooling or optimiser, so the defaults are SpiralNet++'s (length 9) and CoMA's (K = 6). Each
training step uses ``frames`` frames drawn from each sequence (seeded by the step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mien.config import NonNegative, PositiveInt
from mien.errors import ConfigError
from mien.models.base import GenerativeModel, ModelConfig, register
from mien.models.mesh.stacks import MeshDecoderStack, MeshEncoder

VARIANTS = ("proposed", "s2d", "coma", "linear")
BANK = 32  # landmark displacements kept from the first batch for unconditioned samples


@dataclass
class MeshDecoderConfig(ModelConfig):
    """variant: one of ``proposed``, ``s2d``, ``coma``, ``linear`` (module docstring);
    mesh_size: the mesh world's template (``mien.data.world.mesh.mesh_template``) and fingerprint:
    its hierarchy's fingerprint, both from the data; n_landmarks: N, the landmarks per frame (68);
    widths: the five encoder layers' widths, finest level first (the decoder mirrors them);
    spiral_length: SpiralNet++'s sequence length; cheb_k: CoMA's polynomial order; latent: the code
    size of the ``coma`` and ``linear`` encoders; hidden: the ``linear`` autoencoder's hidden width;
    frames: frames per sequence per training step; displacement_weight: the weight of the L1 term
    on dM (S2D: 0.1)."""

    variant: str = "proposed"
    mesh_size: str = "small"
    fingerprint: str = ""
    n_landmarks: PositiveInt = 68
    widths: list[PositiveInt] = field(default_factory=lambda: [16, 32, 32, 64, 64])
    spiral_length: PositiveInt = 9
    cheb_k: PositiveInt = 6
    latent: PositiveInt = 16
    hidden: PositiveInt = 256
    frames: PositiveInt = 8
    displacement_weight: NonNegative = 0.1

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ConfigError(f"model.variant {self.variant!r} is unknown; choose one of {', '.join(VARIANTS)}")
        if len(self.widths) != 5:
            raise ConfigError(f"model.widths needs the five layers' widths (Zou §3.4.3), got {len(self.widths)}")

    @classmethod
    def from_data(cls, section: dict, data) -> "MeshDecoderConfig":
        from mien.data.world.mesh import MESH_SIZES, mesh_template

        template = getattr(data, "template", None)
        if template is None:
            raise ConfigError("the mesh decoder trains on mesh sequences; set data.source: mesh_sequences")
        mark = template.hierarchy.fingerprint()
        size = next((s for s in MESH_SIZES if mesh_template(s).hierarchy.fingerprint() == mark), None)
        if size is None:
            raise ConfigError("the mesh decoder needs the mesh world's topology; train it on data.source: mesh_sequences")
        section = dict(section)
        if section.setdefault("mesh_size", size) != size:
            raise ConfigError(f"model.mesh_size {section['mesh_size']!r} differs from the data's {size!r}; drop it")
        section["fingerprint"] = mark
        n = template.landmark_faces.shape[0]
        if section.setdefault("n_landmarks", n) != n:
            raise ConfigError(f"model.n_landmarks {section['n_landmarks']} differs from the data's {n}; drop it")
        return super().from_data(section, data)


def s2d_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, displacement_weight: float) -> dict:
    """The S2D loss on meshes (..., V, 3): mean_v w_v |M^ - M| + displacement_weight * mean |dM^ - dM|;
    with M^ = M_neutral + dM^ both terms read the same residual (module docstring)."""
    residual = (pred - target).abs()
    mesh = (residual * weights[:, None]).mean()
    displacement = residual.mean()
    return {"loss": mesh + displacement_weight * displacement, "mesh_l1": mesh, "displacement_l1": displacement}


def vertex_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-vertex Euclidean error (Zou Tab. 3.5): ||M^_v - M_v|| for meshes (..., V, 3) -> (..., V)."""
    return (pred - target).norm(dim=-1)


@register("meshdecoder", MeshDecoderConfig)
class MeshDecoder(GenerativeModel):
    """dM_f from the neutral mesh M and the landmark displacements dL_f (module docstring)."""

    def __init__(self, config: MeshDecoderConfig):
        super().__init__(config)
        from mien.data.world.mesh import mesh_template

        template = mesh_template(config.mesh_size)
        hierarchy = template.hierarchy
        if config.fingerprint and hierarchy.fingerprint() != config.fingerprint:
            raise ConfigError(f"the {config.mesh_size} mesh template changed since this model was trained; retrain it")
        self.n_vertices, self.faces = hierarchy.n_vertices[0], hierarchy.faces[0]
        self.coarse = hierarchy.n_vertices[min(len(config.widths), len(hierarchy.n_vertices)) - 1]
        n3, widths, variant = 3 * config.n_landmarks, list(config.widths), config.variant
        self.register_buffer("neutral_mean", template.vertices.clone())
        self.register_buffer("neutral_scale", torch.tensor(1.0))
        self.register_buffer("displacement_scale", torch.tensor(1.0))
        self.register_buffer("vertex_weight", torch.ones(self.n_vertices))
        self.register_buffer("landmark_bank", torch.zeros(BANK, config.n_landmarks, 3))
        kind = "cheb" if variant == "coma" else "spiral"
        extra = dict(spiral_length=config.spiral_length, cheb_k=config.cheb_k)
        if variant == "proposed":
            d = widths[-1]
            self.encoder = MeshEncoder("spiral", hierarchy, 3, widths, **extra)
            self.query = nn.Linear(n3, d)
            self.to_id = nn.Linear(d, n3)
            nn.init.zeros_(self.to_id.weight), nn.init.zeros_(self.to_id.bias)  # start as s2d (docstring)
            self.lam = nn.Parameter(torch.tensor(1.0))
        elif variant == "coma":
            self.encoder = MeshEncoder("cheb", hierarchy, 3, widths, **extra)
            self.to_code = nn.Linear(self.coarse * widths[-1], config.latent)
        elif variant == "linear":
            self.encoder = nn.Sequential(nn.Linear(3 * self.n_vertices, config.hidden), nn.ELU(),
                                         nn.Linear(config.hidden, config.latent))
            self.decoder = nn.Sequential(nn.Linear(config.latent + n3, config.hidden), nn.ELU(),
                                         nn.Linear(config.hidden, 3 * self.n_vertices))
        if variant != "linear":
            z_dim = n3 + (config.latent if variant == "coma" else 0)
            self.from_z = nn.Linear(z_dim, self.coarse * widths[-1])
            self.decoder = MeshDecoderStack(kind, hierarchy, widths[::-1], 3, **extra)

    # data statistics --------------------------------------------------------------------------
    def fit_data(self, batch: dict) -> dict:
        """Normalisers, vertex weights and a bank of landmark displacements from a first batch."""
        neutral, dl, dm = self._inputs(batch)
        self.neutral_mean.copy_(neutral.mean(0))
        self.neutral_scale.copy_((neutral - neutral.mean(0)).std().clamp_min(1.0))
        self.displacement_scale.copy_(dl.std().clamp_min(1e-3))
        m = dm.norm(dim=-1).flatten(0, -2).mean(0)
        w = 1 + m / m.mean().clamp_min(1e-12)
        self.vertex_weight.copy_(w / w.mean())
        frames = dl.flatten(0, 1)
        self.landmark_bank.copy_(frames[torch.arange(BANK) * len(frames) // BANK])
        return {"neutral_scale_mm": float(self.neutral_scale), "displacement_scale_mm": float(self.displacement_scale)}

    def _inputs(self, batch: dict):
        for key in ("mesh", "neutral", "landmarks", "neutral_landmarks"):
            if key not in batch:
                raise ConfigError(f"the mesh decoder needs batches with {key!r}; set data.source: mesh_sequences")
        neutral = batch["neutral"].float()
        return neutral, (batch["landmarks"] - batch["neutral_landmarks"][:, None]).float(), \
            (batch["mesh"] - neutral[:, None]).float()

    # the network ------------------------------------------------------------------------------
    def displacements(self, neutral: torch.Tensor, delta_landmarks: torch.Tensor) -> torch.Tensor:
        """dM (B, T, V, 3) in mm from neutral meshes M (B, V, 3) and dL (B, T, N, 3) in mm."""
        b, t = delta_landmarks.shape[:2]
        m = (neutral - self.neutral_mean) / self.neutral_scale
        dl = (delta_landmarks / self.displacement_scale).reshape(b, t, -1)
        variant = self.config.variant
        if variant == "linear":
            code = self.encoder(m.reshape(b, -1))
            out = self.decoder(torch.cat([code[:, None].expand(b, t, -1), dl], -1))
            return out.reshape(b, t, self.n_vertices, 3) * self.displacement_scale
        if variant == "proposed":
            tokens = self.encoder(m)  # F: (B, V_c, d)
            q = self.query(dl)  # (B, T, d)
            attention = torch.softmax(q @ tokens.transpose(1, 2) / math.sqrt(tokens.shape[-1]), -1)  # Eq. 3.11
            z = self.lam * self.to_id(attention @ tokens) + dl
        elif variant == "coma":
            code = self.to_code(self.encoder(m).flatten(1))
            z = torch.cat([code[:, None].expand(b, t, -1), dl], -1)
        else:
            z = dl
        h = self.from_z(z).reshape(b * t, self.coarse, -1)
        return self.decoder(h).reshape(b, t, self.n_vertices, 3) * self.displacement_scale

    def deform(self, neutral: torch.Tensor, delta_landmarks: torch.Tensor) -> torch.Tensor:
        """The mesh sequences M_f = M + dM_f (B, T, V, 3) of neutral meshes M (B, V, 3) and dL (B, T, N, 3)."""
        return neutral[:, None] + self.displacements(neutral, delta_landmarks)

    def loss(self, batch: dict, step: int = 0) -> dict:
        neutral, dl, dm = self._inputs(batch)
        if dl.shape[1] > self.config.frames:
            g = torch.Generator().manual_seed(step)
            idx = torch.rand(dl.shape[:2], generator=g).argsort(1)[:, :self.config.frames].to(dl.device)
            dl = dl.gather(1, idx[..., None, None].expand(-1, -1, *dl.shape[2:]))
            dm = dm.gather(1, idx[..., None, None].expand(-1, -1, *dm.shape[2:]))
        pred = self.displacements(neutral, dl)
        terms = s2d_loss(pred, dm, self.vertex_weight, self.config.displacement_weight)
        return {**terms, "vertex_error_mm": vertex_error(pred, dm).mean().detach()}

    def sample(self, n: int, cond=None, generator=None) -> dict:
        """``n`` meshes: the mean training face deformed by landmark displacements drawn from the
        first batch's (``cond`` None), or by ``cond`` (n, N, 3) landmark displacements in mm."""
        if cond is None:
            idx = torch.randint(BANK, (n,), generator=generator)
            cond = self.landmark_bank[idx.to(self.landmark_bank.device)]
        cond = torch.as_tensor(cond, dtype=torch.float32, device=self.neutral_mean.device)
        if cond.shape != (n, self.config.n_landmarks, 3):
            raise ConfigError(f"landmark displacements must be {n} x {self.config.n_landmarks} x 3, got {tuple(cond.shape)}")
        neutral = self.neutral_mean.expand(n, -1, -1)
        return {"mesh": self.deform(neutral, cond[:, None])[:, 0]}
