"""What the DVAE family's models share: the mesh config, the topology and the normalisation.

Normalisation (Zou thesis §4.6): each vertex coordinate minus its training mean, divided by its
standard deviation. Departure: the engine shows ``fit_data`` one batch, so the statistics are those
of the first training batch (16 meshes at the presets), the deviations floored at a tenth of their
mean so that a nearly constant coordinate is not blown up."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mien.config import PositiveInt
from mien.errors import ConfigError
from mien.models.base import GenerativeModel, ModelConfig
from mien.models.mesh_dvae.missing import remove
from mien.models.mesh_dvae.network import template_of

MESH_SIZES = ("small", "paper")


@dataclass
class MeshModelConfig(ModelConfig):
    """``mesh_size``: the mesh world's template (its hierarchy is the topology; from the data);
    ``filters``: channels of the Chebyshev blocks (CoMA's 16-16-16-32); ``K``: the polynomial
    order (6, §4.5.1); ``hidden``: the dense layers' width (512, Fig. 4.2)."""

    mesh_size: str = "small"
    filters: list[PositiveInt] = field(default_factory=lambda: [16, 16, 16, 32])
    K: PositiveInt = 6
    hidden: PositiveInt = 512

    def __post_init__(self):
        if self.mesh_size not in MESH_SIZES:
            raise ConfigError(f"model.mesh_size {self.mesh_size!r} is unknown; choose one of {', '.join(MESH_SIZES)}")
        if not self.filters:
            raise ConfigError("model.filters needs at least one block width, e.g. [16, 16, 16, 32]")

    @classmethod
    def from_data(cls, section: dict, data) -> "MeshModelConfig":
        section = dict(section)
        template = getattr(data, "template", None)
        if template is None:
            raise ConfigError("this model trains on meshes; set data.source: meshes")
        size = next((s for s in MESH_SIZES
                     if template_of(s).hierarchy.fingerprint() == template.hierarchy.fingerprint()), None)
        if size is None:
            raise ConfigError("the data's mesh topology is not a mesh-world template; use data.source: meshes")
        if section.setdefault("mesh_size", size) != size:
            raise ConfigError(f"model.mesh_size {section['mesh_size']} differs from the data's ({size}); drop it")
        return super().from_data(section, data)


def meshes_of(batch: dict) -> torch.Tensor:
    """The (B, V, 3) meshes of a batch, with a clear error when the data has none."""
    if "mesh" not in batch:
        raise ConfigError("this model trains on meshes but the data has no 'mesh' key; set data.source: meshes")
    return batch["mesh"].float()


def labels_of(batch: dict) -> torch.Tensor:
    """The binary labels (sex, 0/1) of a batch."""
    if "label" not in batch:
        raise ConfigError("this model needs a binary 'label' per mesh (data.source: meshes)")
    y = torch.as_tensor(batch["label"]).long()
    if y.min() < 0 or y.max() > 1:
        raise ConfigError("mesh labels must be 0 or 1 (two classes, §4.5.1)")
    return y


class MeshModel(GenerativeModel):
    """A model on one mesh topology with the data's normalisation as buffers."""

    def __init__(self, config: MeshModelConfig, template=None):
        super().__init__(config)
        self.template = template if template is not None else template_of(config.mesh_size)
        self.hierarchy = self.template.hierarchy
        self.faces = self.hierarchy.faces[0]  # the topology the sample writer draws
        v = self.hierarchy.n_vertices[0]
        self.register_buffer("mean", torch.as_tensor(self.template.vertices, dtype=torch.float32).clone().view(v, 3))
        self.register_buffer("scale", torch.ones(v, 3))

    def fit_data(self, batch: dict) -> dict:
        x = meshes_of(batch).to(self.mean.device)
        self.mean.copy_(x.mean(0))
        std = x.std(0)
        self.scale.copy_(std.clamp_min(0.1 * float(std.mean()) + 1e-6))
        return {"mean_scale_mm": float(self.scale.mean())}

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.mean.shape:
            raise ConfigError(f"meshes of {x.shape[-2]} vertices given to a model of {self.mean.shape[0]}")
        return (x - self.mean) / self.scale

    def seen(self, meshes: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised meshes, the vertices of ``mask`` (B, V) removed (missing data, §4.8.2)."""
        x = self.normalise(meshes)
        return x if mask is None else remove(x, mask)

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.mean

    @property
    def device(self) -> torch.device:
        return self.mean.device
