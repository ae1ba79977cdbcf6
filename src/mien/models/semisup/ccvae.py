"""CCVAE: the characteristic-capturing VAE (Joy et al. 2021, "Capturing label characteristics in
VAEs", Sec. 3 and Eq. 4-5; Zou thesis §2.2, Fig. 2.12, and the CCVAE rows of Tab. 5.1 and 6.2).

The latent z = (z_c, z_\\c): z_c holds one block of ``zc_dim`` values per label (one value in
Joy et al.), z_\\c the rest. Generative model p(x | z) p(z_c | y) p(y) p(z_\\c) with learnable
per-label conditional priors p(z_c,l | y_l) = N(m_{l,y}, diag s_{l,y}^2) and p(z_\\c) = N(0, I); y
is not an input of the decoder. Inference q(z | x) (no y) and the classifier q(y_l | z_c,l); the
implied q(y | x) = E_{q(z|x)}[q(y | z_c)] is estimated with ``classifier_samples`` draws.

Supervised bound (Eq. 4), with w = q(y | z_c) / q(y | x):

    log p(x, y) >= E_q(z|x)[ w log( p(x|z) p(z|y) / (q(y|z_c) q(z|x)) ) ] + log q(y|x) + log p(y)

Unsupervised bound (Eq. 5): E_{q(z|x) q(y|z_c)}[ log( p(x|z) p(z|y) p(y) / (q(y|z_c) q(z|x)) ) ],
with the expectation over y taken exactly (binary labels; factorised per label).

As in the reference implementation, log p(z|y) - log q(z|x) enters as the analytic
-KL(q(z|x) || p(z|y)) and w takes q(y | z_c) of a stopped-gradient z_c. With the conventions of
:mod:`mien.models.semisup.common` (per-pixel reconstruction, the other ELBO terms times beta), and
``alpha`` on log q(y|x), the loss per labelled face is

    w (||x - x_hat||^2 / (2N) + beta (KL(q(z|x) || p(z|y)) + log q(y|z_c))) - beta log p(y) - alpha log q(y|x)

Architectures (``architecture``): ``joy`` is Joy et al.'s own CelebA networks
(:mod:`mien.nn.joy`: ReLU conv encoder and transposed-conv decoder; ``adain: false``), the
thesis's CCVAE row of Tab. 5.1 ("we first use the implementation of the authors", §5.4; presets
``ccvae/*``: one z_c value per label and 45 latent values in all, the authors' default). ``jdvae``
is JDVAE's trunk and decoder (z_c in the place of u; with ``adain``, AdaIN styles from z_\\c): the
thesis's CCVAE2 (§5.4: "we adapt the architecture of our model to the conditional dependency
structure of CCVAE"; presets ``ccvae2/*``), also Tab. 6.2's CCVAE row ("for all methods, the
architectures of the encoder and of the decoder are similar to those of JDVAE", §6.4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mien.errors import ConfigError
from mien.models.base import images_of, register
from mien.models.semisup.common import (SemiSupConfig, SemiSupModel, Trunk, batch_targets, kl_gaussians,
                                        log_uniform_prior, prior_labels, randn, reconstruction, reparameterise,
                                        split_gaussian)
from mien.models.vae import kl_normal
from mien.nn.adain import TokenDecoder
from mien.nn.joy import JoyDecoder, JoyEncoder


ARCHITECTURES = ("joy", "jdvae")


@dataclass
class CCVAEConfig(SemiSupConfig):
    """zc_dim: the size of each label's block of z_c (1 in Joy et al.); classifier_samples: the
    number of z_c draws estimating q(y|x) (100 in the reference implementation); architecture:
    ``joy`` (Joy et al.'s networks, ``widths`` their channels, ``hidden`` their 256) or ``jdvae``
    (JDVAE's trunk and decoder, CCVAE2). A hidden label
    is always summed over (``unlabelled: enumerate``), q(y|z_c) being a cheap Bernoulli."""

    zc_dim: int = 1
    classifier_samples: int = 100
    unlabelled: str = "enumerate"
    architecture: str = "jdvae"

    def __post_init__(self):
        super().__post_init__()
        if self.unlabelled != "enumerate":
            raise ConfigError("ccvae sums its bound over a hidden label; drop model.unlabelled or set it to enumerate")
        if self.zc_dim < 1 or self.classifier_samples < 1:
            raise ConfigError("model.zc_dim and model.classifier_samples must be >= 1")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"model.architecture {self.architecture!r} is unknown; choose joy (Joy et al.) or jdvae (CCVAE2)")
        if self.architecture == "joy" and self.adain:
            raise ConfigError("model.architecture joy has no AdaIN (Joy et al.'s decoder); set model.adain=false")


@register("ccvae", CCVAEConfig)
class CCVAE(SemiSupModel):
    """CCVAE: parts zc (L x zc_dim) and z (z_dim, z_\\c); a swap exchanges z_c."""

    label_parts = ("zc",)
    feature_part = "zc"

    def __init__(self, config: CCVAEConfig):
        super().__init__(config)
        c, n = config, len(config.labels)
        self.trunk = JoyEncoder(c.image_size, c.in_channels, c.widths, c.hidden) if c.architecture == "joy" else Trunk(c)
        self.z_head = nn.Linear(c.hidden, 2 * (n * c.zc_dim + c.z_dim))
        self.classifier_weight = nn.Parameter(torch.randn(n, c.zc_dim) / math.sqrt(c.zc_dim))
        self.classifier_bias = nn.Parameter(torch.zeros(n))
        # p(z_c,l | y_l): loc and pre-softplus scale per label and class (Joy et al.'s CondPrior)
        self.prior_loc = nn.Parameter(torch.stack([-torch.ones(n, c.zc_dim), torch.ones(n, c.zc_dim)], 1))
        self.prior_scale = nn.Parameter(torch.full((n, 2, c.zc_dim), math.log(math.e - 1)))
        if c.architecture == "joy":
            self.decoder = JoyDecoder(c.image_size, c.in_channels, c.widths, n * c.zc_dim + c.z_dim, c.hidden)
        else:
            self.decoder = TokenDecoder(c.image_size, c.in_channels, c.widths, n * c.zc_dim, c.z_dim, 0,
                                        adain=c.adain, blocks=c.blocks)

    def parts(self):
        return {"zc": (self.n_labels, self.config.zc_dim), "z": (self.config.z_dim,)}

    # --- q(z|x), q(y|z_c), p(z_c|y) ------------------------------------------------------------------
    def posterior(self, x: torch.Tensor):
        """(mu, logvar) of q(z_c|x) (B x L x zc_dim) and of q(z_\\c|x) (B x z_dim)."""
        c = self.config
        mu, logvar = split_gaussian(self.z_head(self.trunk(x)))
        k = self.n_labels * c.zc_dim
        shape = (-1, self.n_labels, c.zc_dim)
        return (mu[:, :k].reshape(shape), logvar[:, :k].reshape(shape)), (mu[:, k:], logvar[:, k:])

    def classifier_logit(self, zc: torch.Tensor) -> torch.Tensor:
        """The logit of q(y_l = 1 | z_c,l), one linear map per label block (..., L)."""
        return (zc * self.classifier_weight).sum(-1) + self.classifier_bias

    @staticmethod
    def log_q_y(logit: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y | z_c) = sum_l log Bernoulli(y_l; sigmoid(logit_l))."""
        return -F.binary_cross_entropy_with_logits(logit, y.expand_as(logit), reduction="none").sum(-1)

    def conditional_prior(self, y: torch.Tensor):
        """(loc, logvar) of p(z_c | y) for y (B x L in [0, 1]): the class's loc and
        softplus(scale) clamped at 1e-3, as in the reference implementation."""
        yy = y[..., None]
        loc = (1 - yy) * self.prior_loc[:, 0] + yy * self.prior_loc[:, 1]
        scale = (1 - yy) * self.prior_scale[:, 0] + yy * self.prior_scale[:, 1]
        return loc, 2 * torch.log(F.softplus(scale).clamp_min(1e-3))

    def log_q_y_given_x(self, mu_c: torch.Tensor, logvar_c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y|x) ~ logsumexp_k log q(y | z_c^k) - log K, z_c^k ~ q(z_c|x)."""
        k = self.config.classifier_samples
        zc = mu_c + torch.exp(0.5 * logvar_c) * torch.randn(k, *mu_c.shape, device=mu_c.device)
        return torch.logsumexp(self.log_q_y(self.classifier_logit(zc), y), dim=0) - math.log(k)

    # --- inference and generation --------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """argmax q(y | z_c = mu_c)."""
        (mu_c, _), _ = self.posterior(x)
        return (self.classifier_logit(mu_c) > 0).float()

    def encode_parts(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict:
        """The posterior means; y is not part of CCVAE's latent (it is predicted from z_c)."""
        (mu_c, _), (mu, _) = self.posterior(x)
        return {"zc": mu_c, "z": mu}

    def decode_parts(self, parts: dict) -> torch.Tensor:
        if self.config.architecture == "joy":
            return self.decoder(torch.cat([parts["zc"].flatten(1), parts["z"]], 1))
        return self.decoder(parts["zc"].flatten(1), parts["z"])

    def sample(self, n: int, cond=None, generator=None) -> dict:
        """y ~ p(y) (or ``cond``), z_c ~ p(z_c | y), z_\\c ~ N(0, I)."""
        y = prior_labels(n, self.n_labels, cond, generator, self.device)
        loc, logvar = self.conditional_prior(y)
        zc = loc + torch.exp(0.5 * logvar) * randn(tuple(loc.shape), generator, self.device)
        return {"image": self.decode_parts({"zc": zc, "z": randn((n, self.config.z_dim), generator, self.device)})}

    def flip_features(self, parts: dict, label: int, y_new: torch.Tensor) -> dict:
        """z_c of the label set to the mean of p(z_c | y_new) (the intervention of Joy et al. Sec. 4)."""
        y = torch.zeros(len(y_new), self.n_labels, device=y_new.device)
        y[:, label] = y_new
        loc, _ = self.conditional_prior(y)
        zc = parts["zc"].clone()
        zc[:, label] = loc[:, label]
        return {**parts, "zc": zc}

    # --- Eq. 4 and 5 ---------------------------------------------------------------------------------
    def loss(self, batch: dict, step: int = 0) -> dict:
        c = self.config
        x = images_of(batch)
        y_true, sup = batch_targets(c, batch)
        (mu_c, logvar_c), (mu, logvar) = self.posterior(x)
        zc, z = reparameterise(mu_c, logvar_c), reparameterise(mu, logvar)
        rec = reconstruction(x, self.decode_parts({"zc": zc, "z": z}))
        kl_rest = kl_normal(mu, logvar)
        logit = self.classifier_logit(zc)
        log_py = log_uniform_prior(self.n_labels)

        # supervised: w (rec + beta (KL(q(z|x) || p(z|y)) + log q(y|z_c))) - beta log p(y) - alpha log q(y|x)
        loc, prior_logvar = self.conditional_prior(y_true)
        kl_sup = kl_gaussians(mu_c, logvar_c, loc, prior_logvar).sum(1) + kl_rest
        log_qyzc = self.log_q_y(logit, y_true)
        log_qyx = self.log_q_y_given_x(mu_c, logvar_c, y_true)
        w = torch.exp(self.log_q_y(self.classifier_logit(zc.detach()), y_true) - log_qyx)
        sup_face = w * (rec + c.beta * (kl_sup + log_qyzc)) - c.beta * log_py - c.alpha * log_qyx

        # unsupervised: rec + beta (KL(q(z_\c|x) || p) + sum_l sum_y q(y|z_c)[KL_l(y) + log q(y|z_c) - log p(y)])
        p1 = torch.sigmoid(logit)
        unsup_terms = torch.zeros_like(rec)
        for value, q in ((0.0, 1 - p1), (1.0, p1)):
            yv = torch.full_like(y_true, value)
            loc_v, logvar_v = self.conditional_prior(yv)
            kl_v = kl_gaussians(mu_c, logvar_c, loc_v, logvar_v)  # B x L
            log_q = torch.log(q.clamp_min(1e-12))
            unsup_terms = unsup_terms + (q * (kl_v + log_q + math.log(2))).sum(1)
        unsup_face = rec + c.beta * (kl_rest + unsup_terms)

        per_face = torch.where(sup, sup_face, unsup_face)
        acc = (((logit > 0).float() == y_true).float().mean(1) * sup.float()).sum() / sup.float().sum().clamp_min(1)
        return {"loss": per_face.mean(), "rec": rec.mean().detach(), "kl_z": kl_rest.mean().detach(),
                "mse": (2 * rec).mean().detach(), "w": (w * sup.float()).sum().detach() / sup.float().sum().clamp_min(1),
                "label_acc": acc.detach(), "supervised": sup.float().mean()}
