"""DVAE: a label-disentangled mesh VAE (Zou thesis ch. 4, §4.5, Eqs. 4.1-4.11), and the sigma-VAE
baseline of §4.6 (``variant: vae``).

Generative model p(x, y, z) = p(x|y, z) p(y) p(z) with p(z) = N(0, I), p(y) = 1/2 and
p(x|y, z) = N(x; f(z, y), v I) (Eqs. 4.1-4.2); inference q(y, z|x) = q(y|x) q(z|x, y) with
q(y|x) = Discrete(q_0(x)) and q(z|x, y) = N(mu, sigma^2), mu = q_1(x, y), log sigma^2 = q_2(x, y)
(Eqs. 4.3-4.7). q_0 shares the convolution blocks with q_1, q_2; one-hot y joins q_1, q_2 before
their two dense layers, shared but for the last (Fig. 4.2). The loss, Eq. 4.11 as a minimisation
per mesh (x normalised, D = 3V coordinates, z = mu + sigma * eps, Eq. 4.8):

    L = ||x - f(z, y)||^2 / (2v) + D/2 log v + KL(N(mu, sigma^2) || N(0, I)) - log p(y) - alpha log q_0(y|x)

(D/2 log v is constant for the DVAE, whose v is a hyperparameter, ``sqrt_v``). The sigma-VAE
(Rybkin et al. 2021) drops y and q_0, has a latent of L + 2 and sets v per batch to the MSE.
With ``missing`` > 0 the encoder sees meshes with one side removed (§4.8.2, :mod:`.missing`)
while the reconstruction target stays the whole mesh.

Sex change and preservation (§4.5.3): z = mu(x, y) with the true label (or y_hat = argmax q_0
when none is given), then f(z, 1 - y) or f(z, y). Departure: the thesis trains with a stepped
learning rate (6e-4, 3e-4, 1e-4 over thirds); the engine offers a constant or cosine schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mien.config import NonNegative, Positive, PositiveInt, Probability
from mien.errors import ConfigError
from mien.models.base import register
from mien.models.mesh_dvae.common import MeshModel, MeshModelConfig, labels_of, meshes_of
from mien.models.mesh_dvae.missing import random_missing, remove
from mien.models.mesh_dvae.network import MeshDecoder, MeshEncoder, mlp_head
from mien.models.vae import kl_normal

VARIANTS = ("dvae", "vae")


@dataclass
class DVAEConfig(MeshModelConfig):
    """``latent``: L, the size of z (16; the VAE's is L + 2); ``alpha``: the weight of the
    classification term; ``sqrt_v``: the standard deviation of p(x|y, z) in normalised units
    (grid {0.7, 1, 1.3, 1.6, 1.9}, §4.6.1); ``missing``: the probability that a training mesh
    loses a side (0.4 in §4.8.2, 0 = no augmentation), ``max_missing`` the largest fraction."""

    variant: str = "dvae"
    latent: PositiveInt = 16
    alpha: NonNegative = 1.0
    sqrt_v: Positive = 1.0
    missing: Probability = 0.0
    max_missing: Probability = 0.4

    def __post_init__(self):
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise ConfigError(f"model.variant {self.variant!r} is unknown; choose one of {', '.join(VARIANTS)}")


def gaussian_nll(x: torch.Tensor, x_hat: torch.Tensor, v: torch.Tensor | float) -> torch.Tensor:
    """-log N(x; x_hat, v I) per mesh without the constant D/2 log 2 pi: ||x - x_hat||^2 / (2v) + D/2 log v."""
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    d = x[0].numel()
    return (x - x_hat).pow(2).flatten(1).sum(1) / (2 * v) + 0.5 * d * torch.log(v)


def sigma_vae_variance(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The sigma-VAE's v: the batch's mean squared error (its optimum; gradients do not pass)."""
    return (x - x_hat).pow(2).mean().detach().clamp_min(1e-8)


def label_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log q_0(y|x) per mesh from the logits of P_y (Eq. 4.6)."""
    return nn.functional.cross_entropy(logits, y, reduction="none")


def one_hot(y: torch.Tensor) -> torch.Tensor:
    return nn.functional.one_hot(y.long(), 2).float()


@register("dvae", DVAEConfig)
class DVAE(MeshModel):
    """q_0, q_1, q_2 and f on the mesh hierarchy; ``variant: vae`` is the sigma-VAE baseline."""

    def __init__(self, config: DVAEConfig, template=None):
        super().__init__(config, template)
        c = config
        self.labelled = c.variant == "dvae"
        self.encoder = MeshEncoder(self.hierarchy, 3, c.filters, c.K)
        f, y_dim = self.encoder.out_features, 2 if self.labelled else 0
        self.z_dim = c.latent if self.labelled else c.latent + 2
        self.q0 = mlp_head(f, c.hidden, 2) if self.labelled else None
        self.dense = nn.Linear(f, c.hidden)
        self.joint = nn.Linear(c.hidden + y_dim, c.hidden)
        self.q1, self.q2 = nn.Linear(c.hidden, self.z_dim), nn.Linear(c.hidden, self.z_dim)
        self.decoder = MeshDecoder(self.hierarchy, self.z_dim + y_dim, c.filters, c.K)

    # --- the networks, on normalised meshes ------------------------------------------------------
    def logits(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """The logits of P_y = q_0(x) (Eq. 4.6)."""
        if not self.labelled:
            raise ConfigError("the VAE variant has no q(y|x); use variant dvae or the classifier C")
        return self.q0(self.encoder(x) if features is None else features)

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None, features: torch.Tensor | None = None):
        """(mu, log sigma^2) = (q_1(x, y), q_2(x, y)) (Eq. 4.7)."""
        h = nn.functional.elu(self.dense(self.encoder(x) if features is None else features))
        if self.labelled:
            h = torch.cat([h, one_hot(y)], 1)
        h = nn.functional.elu(self.joint(h))
        return self.q1(h), self.q2(h)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """f(z, y) (Eq. 4.9), normalised."""
        return self.decoder(torch.cat([z, one_hot(y)], 1) if self.labelled else z)

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f(z, 0) and f(z, 1) with z = mu(x, y_hat), y_hat = argmax q_0(x) (§4.8.1), normalised."""
        features = self.encoder(x)
        y_hat = self.logits(x, features).argmax(1)
        z = self.posterior(x, y_hat, features)[0]
        zeros = torch.zeros_like(y_hat)
        return self.generate(z, zeros), self.generate(z, zeros + 1)

    # --- on native meshes (mm) -----------------------------------------------------------------------
    def predict(self, meshes: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """y_hat = argmax q_0(x)."""
        return self.logits(self.seen(meshes, mask)).argmax(1)

    def reconstruct(self, meshes: torch.Tensor, y: torch.Tensor | None = None, flip: bool = False,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
        """Sex preservation f(mu(x, y), y), or sex change f(mu(x, y), 1 - y) with ``flip`` (§4.5.3);
        y is the true label when given, else y_hat. The VAE's reconstruction f(mu(x))."""
        x = self.seen(meshes, mask)
        if not self.labelled:
            return self.denormalise(self.generate(self.posterior(x, None)[0], None))
        features = self.encoder(x)
        y = self.logits(x, features).argmax(1) if y is None else y.long().to(x.device)
        z = self.posterior(x, y, features)[0]
        return self.denormalise(self.generate(z, 1 - y if flip else y))

    def sample(self, n: int, cond=None, generator=None) -> dict:
        """z ~ N(0, I), y ~ p(y) = 1/2 (or ``cond``: 0 or 1); meshes in mm."""
        z = torch.randn(n, self.z_dim, generator=generator).to(self.device)
        if not self.labelled:
            return {"mesh": self.denormalise(self.generate(z, None))}
        y = torch.randint(2, (n,), generator=generator) if cond is None else torch.as_tensor(cond).long().expand(n)
        if y.min() < 0 or y.max() > 1:
            raise ConfigError(f"a DVAE label is 0 or 1, got {cond!r}")
        y = y.to(self.device)
        return {"mesh": self.denormalise(self.generate(z, y)), "label": y}

    # --- the loss ------------------------------------------------------------------------------------
    def loss(self, batch: dict, step: int = 0) -> dict:
        """Eq. 4.11 (DVAE) or the sigma-VAE criterion, mean per mesh."""
        c, meshes = self.config, meshes_of(batch)
        x = self.normalise(meshes)
        seen = remove(x, random_missing(meshes, 1 - c.missing, c.max_missing)) if c.missing > 0 else x
        features = self.encoder(seen)
        y = labels_of(batch).to(x.device) if self.labelled else None
        mu, logvar = self.posterior(seen, y, features)
        x_hat = self.generate(mu + torch.randn_like(mu) * (0.5 * logvar).exp(), y)
        v = c.sqrt_v ** 2 if self.labelled else sigma_vae_variance(x, x_hat)
        rec, kl = gaussian_nll(x, x_hat, v), kl_normal(mu, logvar)
        terms = {"rec": rec.mean(), "kl": kl.mean(), "mse": (x - x_hat).pow(2).mean().detach()}
        total = rec + kl
        if self.labelled:
            logits = self.logits(seen, features)
            cls = label_nll(logits, y)
            total = total + math.log(2) + c.alpha * cls
            terms.update(cls=cls.mean().detach(), acc=(logits.argmax(1) == y).float().mean())
        return {"loss": total.mean(), **{k: t.detach() for k, t in terms.items()}}
