"""JDVAE: joint disentanglement of labels and their features (Zou thesis ch. 5, §5.3; digest C).

Generative model (Eq. 5.1-5.2): p(x, y, z, u) = p(x | y, z, u) p(u | y) p(y) p(z), p(z) = N(0, I),
p(y) uniform, p(x | y, z, u) = N(d(y, z, u), v I), and the label-feature priors of §5.3.1:
p(u | y = 1) = N(0, I) for both approaches; p(u | y = 0) = delta(u) (**PA1**, where the decoder
also multiplies u by y) or N(0, 0.1 I) (**PA2**).

Inference model (Eq. 5.3): q(y, z, u | x) = q(y | x) q(z | x, y) q(u | x, y), q(y|x) a softmax,
q(z|.) and q(u|.) Gaussian (q(u | x, y = 0) = delta for PA1). With several labels (§5.4):
q(y_1 | x) q(y_2 | x) q(z | x, y_1, y_2) q(u_1 | x, y_1) q(u_2 | x, y_2).

Decoder (Fig. 5.1, :class:`~mien.nn.adain.TokenDecoder`): AdaIN of z in every layer, one set of
learnable tokens per class (a scalar at the first FC layer, one token image per residual block).
Ablations of §5.4: ``adain: false`` (GroupNorm instead), ``tokens: false`` (y at the FC input).

Loss (Eq. 5.4 with v = 1, divided by the N pixels, as a minimisation; digest C.2), per face:

    ||x - x_hat||^2 / (2N) + beta KL(q(z|x,y) || p(z)) + beta sum_l w_{y_l} KL(q(u_l|x,y_l) || p(u_l|y_l))
    - beta log p(y) - alpha log q(y|x)

with w_1 = 1/100, w_0 = 1, the PA1 term for y = 0 equal to 0, and -alpha log q(y|x) on labelled
faces only. A hidden label is sampled from q(y|x) with Gumbel-softmax (§5.3.2) at ``temperature``;
the tokens are mixed by the soft y and the u-terms weighed by it; ``entropy`` adds
beta (-H(q(y|x))) for those faces (the M2 term, an option the thesis leaves open). ``unlabelled:
enumerate`` sums the bound over y instead (the exact M2 treatment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mien.errors import ConfigError
from mien.models.base import register
from mien.models.semisup.common import SemiSupConfig, kl_gaussians, randn, split_gaussian
from mien.models.semisup.m2 import M2
from mien.models.vae import kl_normal

PRIORS = ("pa1", "pa2")


@dataclass
class JDVAEConfig(SemiSupConfig):
    """u_dim: size of each label's u (16 in §5.4); prior: pa1 or pa2; w1, w0: the weights of the
    u-KL for y = 1 and y = 0 (1/100 and 1, §5.4); pa2_variance: the variance of p(u | y = 0) under
    PA2 (0.1); entropy: add beta (-H(q(y|x))) for faces with a hidden label (Gumbel treatment)."""

    u_dim: int = 16
    prior: str = "pa1"
    w1: float = 0.01
    w0: float = 1.0
    pa2_variance: float = 0.1
    entropy: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.prior not in PRIORS:
            raise ConfigError(f"model.prior {self.prior!r} is unknown; choose pa1 or pa2 (Zou §5.3.1)")
        if self.u_dim < 1:
            raise ConfigError(f"model.u_dim must be >= 1, got {self.u_dim}")
        if self.w1 < 0 or self.w0 < 0 or not self.pa2_variance > 0:
            raise ConfigError("model.w1 and model.w0 must be >= 0 and model.pa2_variance > 0")


@register("jdvae", JDVAEConfig)
class JDVAE(M2):
    """JDVAE (Zou §5.3): M2's structure plus the label features u; parts y (L), z (z_dim),
    u (L x u_dim). The loss is M2's with the u-term of Eq. 5.4 (:meth:`feature_kl`)."""

    label_parts = ("y", "u")
    feature_part = "u"

    def __init__(self, config: JDVAEConfig):
        super().__init__(config)
        self.u_heads = nn.ModuleList([nn.Linear(config.hidden + 2, 2 * config.u_dim) for _ in config.labels])

    def feature_dim(self) -> int:
        return len(self.config.labels) * self.config.u_dim

    def parts(self):
        return {**super().parts(), "u": (self.n_labels, self.config.u_dim)}

    def uses_entropy(self) -> bool:
        """Optional with Gumbel sampling (digest C.2), part of the bound when enumerating."""
        return self.config.entropy or self.config.unlabelled == "enumerate"

    def feature_posterior(self, h: torch.Tensor, y: torch.Tensor):
        """q(u_l | x, y_l) for each label: an FC head on [trunk features, one-hot y_l]."""
        stats = [split_gaussian(head(torch.cat([h, 1 - y[:, l:l + 1], y[:, l:l + 1]], 1)))
                 for l, head in enumerate(self.u_heads)]
        return torch.stack([s[0] for s in stats], 1), torch.stack([s[1] for s in stats], 1)

    def gate(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """PA1 multiplies u by y (§5.3.1), so u = 0 whenever y = 0; PA2 leaves u as it is."""
        return u * y[..., None] if self.config.prior == "pa1" else u

    def feature_kl(self, mu_u: torch.Tensor, logvar_u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sum_l w_{y_l} KL(q(u_l|x,y_l) || p(u_l|y_l)) per face (Eq. 5.4, second term), a soft y in
        [0, 1] weighing the two cases: y = 1: w1 KL(q || N(0, I)); y = 0: 0 under PA1 (q and p are
        both delta(u), §5.3.2) or w0 KL(q || N(0, pa2_variance I)) under PA2."""
        c = self.config
        kl1 = kl_normal(mu_u.flatten(0, 1), logvar_u.flatten(0, 1)).view(y.shape)
        out = y * c.w1 * kl1
        if c.prior == "pa2":
            prior_logvar = torch.full_like(logvar_u, math.log(c.pa2_variance))
            out = out + (1 - y) * c.w0 * kl_gaussians(mu_u, logvar_u, torch.zeros_like(mu_u), prior_logvar)
        return out.sum(1)

    def prior_features(self, y: torch.Tensor, generator=None) -> dict:
        """u ~ p(u | y): N(0, I) for y = 1; for y = 0, 0 (PA1, through the gate) or N(0, 0.1 I) (PA2)."""
        c = self.config
        u = randn((len(y), self.n_labels, c.u_dim), generator, self.device)
        if c.prior == "pa2":
            u = u * torch.where(y[..., None] > 0, 1.0, math.sqrt(c.pa2_variance))
        return {"u": u}

    def flip_features(self, parts: dict, label: int, y_new: torch.Tensor) -> dict:
        """The mean of p(u | y_new) is 0 under both priors."""
        u = parts["u"].clone()
        u[:, label] = 0
        return {**parts, "u": u}
