"""M2 (Kingma et al. 2014, "Semi-supervised learning with deep generative models", Sec. 3.1.2
and Eq. 6-9; Zou thesis Eq. 2.31-2.33 and the M2 rows of Tab. 5.1 and 6.2).

p(x, y, z) = p(x | y, z) p(y) p(z) with p(z) = N(0, I), p(y) uniform; q(y, z | x) = q(y|x) q(z|x, y).
As in Zou §5.4, M2 is built on JDVAE's architecture with u removed: the encoder trunk, the FC heads
with one-hot y, and the AdaIN / token decoder (:class:`~mien.nn.adain.TokenDecoder`).

With the conventions of :mod:`mien.models.semisup.common` (per-pixel reconstruction, beta on the
other ELBO terms), per face:

    L(x, y) = ||x - x_hat||^2 / (2N) + beta KL(q(z|x,y) || p(z)) - beta log p(y)        (Eq. 6)
    U(x)    = sum_y q(y|x) L(x, y) - beta H(q(y|x))                                     (Eq. 7)
    J       = sum_labelled [L(x, y) - alpha log q(y|x)] + sum_unlabelled U(x)            (Eq. 9)

``unlabelled: enumerate`` (the default) computes U exactly over the 2^L label combinations;
``unlabelled: gumbel`` estimates it with one Gumbel-softmax sample y ~ q(y|x) (with
``gumbel_hard``, a straight-through one-hot sample, whose L(x, y) has expectation
sum_y q(y|x) L(x, y)). Note sum_y q(y|x) (-log p(y)) - H(q) = KL(q(y|x) || p(y)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mien.models.base import images_of, register
from mien.models.semisup.common import (SemiSupConfig, SemiSupModel, Trunk, batch_targets, entropy, gumbel_softmax,
                                        label_combinations, label_log_likelihood, log_uniform_prior, one_hot,
                                        prior_labels, randn, reconstruction, reparameterise, split_gaussian)
from mien.models.vae import kl_normal
from mien.nn.adain import TokenDecoder


@dataclass
class M2Config(SemiSupConfig):
    unlabelled: str = "enumerate"


@register("m2", M2Config)
class M2(SemiSupModel):
    """M2: parts y (L) and z (z_dim). Subclasses add label features (JDVAE's u) through
    :meth:`feature_dim`, :meth:`feature_posterior`, :meth:`feature_kl` and :meth:`gate`."""

    label_parts = ("y",)

    def __init__(self, config: SemiSupConfig):
        super().__init__(config)
        c, n = config, len(config.labels)
        self.trunk = Trunk(c)
        self.y_head = nn.Linear(c.hidden, 2 * n)
        self.z_head = nn.Linear(c.hidden + 2 * n, 2 * c.z_dim)
        self.decoder = TokenDecoder(c.image_size, c.in_channels, c.widths, self.feature_dim(), c.z_dim, n,
                                    tokens=c.tokens, adain=c.adain, token_channels=c.token_channels, blocks=c.blocks)

    # --- hooks for label features (none in M2) ------------------------------------------------------
    def feature_dim(self) -> int:
        return 0

    def feature_posterior(self, h: torch.Tensor, y: torch.Tensor):
        """(mu, logvar) of q(u|x,y), each B x L x d; None without features."""
        return None

    def feature_kl(self, mu, logvar, y: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(y), device=y.device)

    def gate(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return u

    def uses_entropy(self) -> bool:
        """U(x) holds -beta H(q(y|x)) in both treatments of a hidden label."""
        return True

    # --- inference and generation --------------------------------------------------------------------
    def parts(self):
        return {"y": (self.n_labels,), "z": (self.config.z_dim,)}

    def label_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.y_head(h).view(-1, self.n_labels, 2)

    def z_posterior(self, h: torch.Tensor, y: torch.Tensor):
        return split_gaussian(self.z_head(torch.cat([h, one_hot(y)], 1)))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.label_logits(self.trunk(x)).argmax(-1).float()

    def encode_parts(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict:
        """y = argmax q(y|x) unless given; z (and u) the posterior means (Fig. 5.1, testing)."""
        h = self.trunk(x)
        y = self.label_logits(h).argmax(-1).float() if y is None else y.float().to(h.device)
        parts = {"y": y, "z": self.z_posterior(h, y)[0]}
        stats = self.feature_posterior(h, y)
        if stats is not None:
            parts["u"] = stats[0]
        return parts

    def features_of(self, parts: dict, y: torch.Tensor) -> torch.Tensor:
        if "u" not in parts:
            return y.new_zeros(len(y), 0)
        return self.gate(parts["u"], y).flatten(1)

    def decode_parts(self, parts: dict) -> torch.Tensor:
        y = parts["y"].float()
        return self.decoder(self.features_of(parts, y), parts["z"], y)

    def prior_features(self, y: torch.Tensor, generator=None) -> dict:
        return {}

    def sample(self, n: int, cond=None, generator=None) -> dict:
        """y ~ p(y) (or ``cond``: 0/1 per label), z ~ N(0, I) (and u ~ p(u|y))."""
        y = prior_labels(n, self.n_labels, cond, generator, self.device)
        z = randn((n, self.config.z_dim), generator, self.device)
        return {"image": self.decode_parts({"y": y, "z": z, **self.prior_features(y, generator)})}

    # --- the bound -----------------------------------------------------------------------------------
    def bound(self, x: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> dict:
        """L(x, y) per face (labels y: B x L in [0, 1]) and its terms, one reparameterised sample."""
        c = self.config
        mu_z, logvar_z = self.z_posterior(h, y)
        parts = {"y": y, "z": reparameterise(mu_z, logvar_z)}
        stats = self.feature_posterior(h, y)
        kl_u = self.feature_kl(*stats, y) if stats is not None else torch.zeros(len(x), device=x.device)
        if stats is not None:
            parts["u"] = reparameterise(*stats)
        rec = reconstruction(x, self.decode_parts(parts))
        kl_z = kl_normal(mu_z, logvar_z)
        total = rec + c.beta * (kl_z + kl_u - log_uniform_prior(self.n_labels))
        return {"total": total, "rec": rec, "kl_z": kl_z, "kl_u": kl_u}

    def enumerated(self, x: torch.Tensor, h: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """sum_y q(y|x) L(x, y) per face, over the 2^L label combinations."""
        out = torch.zeros(len(x), device=x.device)
        for y in label_combinations(self.n_labels, x.device):
            yb = y.expand(len(x), -1)
            out = out + label_log_likelihood(logits, yb).exp() * self.bound(x, h, yb)["total"]
        return out

    def loss(self, batch: dict, step: int = 0) -> dict:
        """J of Eq. 9 (mean per face): L(x, y) - alpha log q(y|x) on labelled faces, U(x) on the others."""
        c = self.config
        x = images_of(batch)
        y_true, sup = batch_targets(c, batch)
        h = self.trunk(x)
        logits = self.label_logits(h)
        gumbel = c.unlabelled == "gumbel" and not sup.all()
        y = torch.where(sup[:, None], y_true, gumbel_softmax(logits, c.temperature, c.gumbel_hard)) if gumbel else y_true
        terms = self.bound(x, h, y)
        per_face = terms["total"]
        if c.unlabelled == "enumerate" and not sup.all():
            per_face = torch.where(sup, per_face, self.enumerated(x, h, logits))
        unsup = (~sup).float()
        per_face = per_face - c.alpha * sup.float() * label_log_likelihood(logits, y_true)
        if self.uses_entropy():
            per_face = per_face - c.beta * unsup * entropy(logits)
        hits = (logits.argmax(-1).float() == y_true).float().mean(1)
        acc = (hits * sup.float()).sum() / sup.float().sum().clamp_min(1)
        return {"loss": per_face.mean(), "rec": terms["rec"].mean().detach(), "kl_z": terms["kl_z"].mean().detach(),
                "kl_u": terms["kl_u"].mean().detach(), "mse": (2 * terms["rec"]).mean().detach(),
                "label_acc": acc.detach(), "supervised": sup.float().mean()}
