"""The independent classifiers of Zou thesis ch. 4: C (§4.6, q_0's architecture trained alone with
the cross-entropy) and C_recon (§4.8.1: the same but for the first layer, fed the residuals
[x - f(z, 0), x - f(z, 1)] of a trained, frozen DVAE, z computed with y_hat), and their saliency
maps (Eq. 4.12, Simonyan et al. 2014): w_ic = |d p(y = 0|x) / d x_ic|, the map at vertex i being
max_c w_ic.

C_recon normalises with its DVAE's statistics and holds the DVAE's weights in its checkpoint
(rebuilt from ``recon_from``, the DVAE's checkpoint folder). With ``missing`` > 0 both train on
meshes with one side removed (§4.8.2); C_recon then sees the residuals of the augmented mesh."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mien.config import Probability
from mien.errors import ConfigError
from mien.models.base import register
from mien.models.mesh_dvae.common import MeshModel, MeshModelConfig, labels_of, meshes_of
from mien.models.mesh_dvae.dvae import DVAE, label_nll
from mien.models.mesh_dvae.missing import random_missing, remove
from mien.models.mesh_dvae.network import MeshEncoder, mlp_head


@dataclass
class MeshClassifierConfig(MeshModelConfig):
    """``recon_from``: a DVAE checkpoint folder (C_recon), None for C; ``missing``,
    ``max_missing``: the missing-data augmentation (:mod:`.missing`)."""

    recon_from: str | None = None
    missing: Probability = 0.0
    max_missing: Probability = 0.4


def _load_dvae(path: str) -> DVAE:
    from mien.models.checkpoint import load

    model = load(path)
    if not isinstance(model, DVAE) or not model.labelled:
        raise ConfigError(f"model.recon_from {path} is not a DVAE checkpoint (variant dvae)")
    return model


@register("mesh_classifier", MeshClassifierConfig)
class MeshClassifier(MeshModel):
    """C, or C_recon when ``recon_from`` names a DVAE."""

    def __init__(self, config: MeshClassifierConfig, template=None, dvae: DVAE | None = None):
        super().__init__(config, template)
        self.dvae = dvae if dvae is not None else _load_dvae(config.recon_from) if config.recon_from else None
        if self.dvae is not None:
            if self.dvae.mean.shape != self.mean.shape:
                raise ConfigError("model.recon_from is a DVAE of another mesh topology")
            self.dvae.requires_grad_(False)  # frozen: C_recon trains alone
        self.encoder = MeshEncoder(self.hierarchy, 6 if self.dvae is not None else 3, config.filters, config.K)
        self.head = mlp_head(self.encoder.out_features, config.hidden, 2)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The network input of normalised meshes (the DVAE's normalisation for C_recon)."""
        if self.dvae is None:
            return x
        f0, f1 = self.dvae.both(x)
        return torch.cat([x - f0, x - f1], 2)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return super().normalise(x) if self.dvae is None else self.dvae.normalise(x)

    def logits_of(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of normalised (possibly incomplete) meshes."""
        return self.head(self.encoder(self.inputs(x)))

    def predict(self, meshes: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """y_hat of native meshes, the vertices of ``mask`` (B, V) removed first."""
        return self.logits_of(self.seen(meshes, mask)).argmax(1)

    def saliency(self, meshes: torch.Tensor) -> torch.Tensor:
        """Eq. 4.12: (B, V) max over coordinates of |d p(y = 0|x) / d x_ic|, x the normalised mesh."""
        x = self.normalise(meshes).detach().requires_grad_(True)
        with torch.enable_grad():
            p0 = self.logits_of(x).softmax(1)[:, 0]
            (grad,) = torch.autograd.grad(p0.sum(), x)
        return grad.abs().amax(2)

    def loss(self, batch: dict, step: int = 0) -> dict:
        c, meshes = self.config, meshes_of(batch)
        y = labels_of(batch).to(meshes.device)
        x = self.normalise(meshes)
        if c.missing > 0:
            x = remove(x, random_missing(meshes, 1 - c.missing, c.max_missing))
        logits = self.logits_of(x)
        return {"loss": label_nll(logits, y).mean(), "acc": (logits.argmax(1) == y).float().mean().detach()}
