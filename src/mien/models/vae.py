"""Autoencoders and the VAE family on the shared conv stacks (``mien.nn.conv``).

Registered names:

- ``ae``: deterministic autoencoder, loss ||x - f(e(x))||^2 (lecture 002, "Auto-encoders").
- ``vae``: Gaussian q(z|x) = N(mu_x, diag(sigma_x^2)), reparameterisation trick, loss
  E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I)) (lecture 002, "Interpretation of the loss
  function"; Zou thesis Eq. 2.4-2.5, and Eq. 2.28 for beta != 1).
- ``beta_vae``: ``vae`` with beta = 4 by default (Higgins et al. 2017; Zou Eq. 2.28).
- ``capacity_vae``: E_q[-log p(x|z)] + gamma * |KL - C| with C raised linearly from 0
  (Burgess et al. 2018; Zou Eq. 2.29).
- ``tcvae``: beta-TCVAE, the KL split into index-code MI, total correlation and dimension-wise KL,
  each with its own weight (Chen et al. 2018, Sec. 3 and 4.1; Zou Eq. 2.30).
- ``factorvae``: VAE + gamma * TC, TC estimated by a discriminator with the density-ratio trick
  (Kim & Mnih 2018, Eq. 2-3; Zou ch. 2, FactorVAE, with the sign of the TC term corrected).

Every loss is per image (sums over pixels and latent dimensions, mean over the batch) except the
plain autoencoder's, which is the per-pixel mean squared error. All loss dicts also log ``mse``, the
per-pixel mean squared reconstruction error, so runs of different families can be compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mien.errors import ConfigError
from mien.models.base import GenerativeModel, ImageConfig, Phase, images_of, register
from mien.nn.conv import VectorDecoder, VectorEncoder

LOGVAR_RANGE = (-10.0, 10.0)
LIKELIHOODS = ("gaussian", "sigma", "bernoulli")


def _positive(config, *names):
    for n in names:
        if getattr(config, n) < 0:
            raise ConfigError(f"model.{n} must be >= 0, got {getattr(config, n)}")


@dataclass
class AEConfig(ImageConfig):
    latent_dim: int = 10

    def __post_init__(self):
        if self.latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be >= 1, got {self.latent_dim}")


@dataclass
class LikelihoodConfig(AEConfig):
    """Decoder likelihood p(x|z), shared by the VAE family:

    - ``gaussian``: N(x; x_hat, sigma^2 I) with fixed ``sigma`` (on the [-1, 1] pixel scale);
    - ``sigma``: the same with the optimal shared variance sigma^2 = MSE(x, x_hat), computed in
      closed form per batch and detached (sigma-VAE, Rybkin et al. 2021, "optimal sigma");
    - ``bernoulli``: pixels mapped to [0, 1], Bernoulli with decoder logits.
    """

    likelihood: str = "gaussian"
    sigma: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"model.likelihood {self.likelihood!r} is unknown; choose one of {', '.join(LIKELIHOODS)}")
        if self.sigma <= 0:
            raise ConfigError(f"model.sigma must be > 0, got {self.sigma}")


@dataclass
class VAEConfig(LikelihoodConfig):
    beta: float = 1.0
    kl_warmup_steps: int = 0

    def __post_init__(self):
        super().__post_init__()
        _positive(self, "beta", "kl_warmup_steps")


@dataclass
class BetaVAEConfig(VAEConfig):
    beta: float = 4.0


@dataclass
class CapacityVAEConfig(LikelihoodConfig):
    gamma: float = 1000.0
    capacity_max: float = 25.0
    capacity_steps: int = 100000

    def __post_init__(self):
        super().__post_init__()
        _positive(self, "gamma", "capacity_max", "capacity_steps")


@dataclass
class TCVAEConfig(LikelihoodConfig):
    alpha: float = 1.0
    beta: float = 6.0
    gamma: float = 1.0
    dataset_size: int = 10000

    def __post_init__(self):
        super().__post_init__()
        _positive(self, "alpha", "beta", "gamma")
        if self.dataset_size < 1:
            raise ConfigError(f"model.dataset_size must be >= 1 (the number of training images), got {self.dataset_size}")

    @classmethod
    def from_data(cls, section: dict, data) -> "TCVAEConfig":
        """N of the minibatch-weighted estimator is the training set's size."""
        return super().from_data({"dataset_size": len(data), **section}, data)


@dataclass
class FactorVAEConfig(LikelihoodConfig):
    gamma: float = 10.0
    disc_hidden: int = 1000
    disc_layers: int = 6

    def __post_init__(self):
        super().__post_init__()
        _positive(self, "gamma")
        if self.disc_hidden < 1 or self.disc_layers < 1:
            raise ConfigError("model.disc_hidden and model.disc_layers must be >= 1")


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, summed over dimensions (Kingma &
    Welling 2014, App. B): -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(logvar))."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def tc_mws(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int):
    """Minibatch-weighted-sampling estimates (Chen et al. 2018, Sec. 4.1) of
    the three terms of the KL decomposition (Zou Eq. 2.30), averaged over the batch:

        log q(z_i)        ~ logsumexp_j log q(z_i | x_j)             - log(N M)
        log q(z_i,d)      ~ logsumexp_j log q(z_i,d | x_j)           - log(N M)
        mi   = E_i[log q(z_i | x_i) - log q(z_i)]                    (index-code MI)
        tc   = E_i[log q(z_i) - sum_d log q(z_i,d)]                  (total correlation)
        dwkl = E_i[sum_d log q(z_i,d) - log p(z_i)]                  (dimension-wise KL)

    with M the batch size and N = ``dataset_size``; z_i ~ q(z|x_i) is row i of ``z``.
    """
    m = z.shape[0]
    log_nm = math.log(dataset_size * m)
    log_q_pairs = log_normal(z[:, None, :], mu[None, :, :], logvar[None, :, :])  # [i, j, d]
    log_qz = torch.logsumexp(log_q_pairs.sum(2), dim=1) - log_nm
    log_prod_qzd = (torch.logsumexp(log_q_pairs, dim=1) - log_nm).sum(1)
    log_qz_x = log_normal(z, mu, logvar).sum(1)
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    mi = (log_qz_x - log_qz).mean()
    tc = (log_qz - log_prod_qzd).mean()
    dwkl = (log_prod_qzd - log_pz).mean()
    return mi, tc, dwkl


class _Autoencoder(GenerativeModel):
    """Shared body: VectorEncoder -> code, VectorDecoder <- code; ``decode`` gives images in
    [-1, 1] scale; subclasses define the code distribution and the loss."""

    def __init__(self, config, encoder_out: int):
        super().__init__(config)
        c = config
        self.encoder = VectorEncoder(c.image_size, c.in_channels, c.widths, encoder_out, c.blocks)
        self.decoder = VectorDecoder(c.image_size, c.in_channels, c.widths, c.latent_dim, c.blocks)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def latent_spaces(self) -> dict[str, tuple[int, ...]]:
        """The codes z that ``encode`` gives and ``decode`` takes (edited by ``mien.control``)."""
        return {"z": (self.latent_dim,)}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def prior_sample(self, n: int, generator=None) -> torch.Tensor:
        device = generator.device if generator is not None else self.device
        return torch.randn(n, self.latent_dim, generator=generator, device=device).to(self.device)

    def sample(self, n: int, cond=None, generator=None) -> dict:
        """A sample dict: ``image`` decoded from prior codes."""
        if cond is not None:
            raise ConfigError(f"{self.model_name} is unconditional; sample it without a condition")
        return {"image": self.decode(self.prior_sample(n, generator))}


@register("ae", AEConfig)
class Autoencoder(_Autoencoder):
    """Plain autoencoder, loss ||x - f(e(x))||^2 as a per-pixel mean (lecture 002,
    "Auto-encoders", "Example of a cost function").

    An autoencoder has no prior; ``sample`` draws from a diagonal Gaussian fitted to the training
    codes (running mean and variance, updated in ``loss`` while in training mode)."""

    def __init__(self, config: AEConfig):
        super().__init__(config, config.latent_dim)
        self.register_buffer("code_mean", torch.zeros(config.latent_dim))
        self.register_buffer("code_var", torch.ones(config.latent_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def prior_sample(self, n: int, generator=None) -> torch.Tensor:
        return self.code_mean + self.code_var.sqrt() * super().prior_sample(n, generator)

    def loss(self, batch: dict, step: int = 0) -> dict:
        x = images_of(batch)
        z = self.encode(x)
        mse = F.mse_loss(self.decode(z), x)
        if self.training:
            with torch.no_grad():
                self.code_mean.lerp_(z.mean(0), 0.01)
                self.code_var.lerp_(z.var(0, unbiased=False), 0.01)
        return {"loss": mse, "mse": mse.detach()}


class _GaussianVAE(_Autoencoder):
    """Gaussian encoder q(z|x) = N(mu_x, diag(exp(logvar_x))) and the decoder likelihoods of
    :class:`LikelihoodConfig`; subclasses combine ``nll`` and the posterior terms."""

    def __init__(self, config: LikelihoodConfig):
        super().__init__(config, 2 * config.latent_dim)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean mu_x."""
        return self.posterior(x)[0]

    @staticmethod
    def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I) (lecture 002, "Reparameterization trick")."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def to_image(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output (Gaussian mean or Bernoulli logits) -> the mean image in [-1, 1] scale."""
        return torch.sigmoid(out) * 2 - 1 if self.config.likelihood == "bernoulli" else out

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_image(self.decoder(z))

    def nll(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) per image, summed over pixels. Gaussian: sum (x - x_hat)^2 / (2 sigma^2) +
        1/2 log(2 pi sigma^2) (Zou Eq. 2.4-2.5, Gaussian decoder)."""
        c = self.config
        if c.likelihood == "bernoulli":
            target = (x + 1) / 2
            return F.binary_cross_entropy_with_logits(out, target, reduction="none").flatten(1).sum(1)
        sq = (x - out).pow(2).flatten(1)
        if c.likelihood == "sigma":
            var = sq.mean().detach().clamp_min(1e-6)  # sigma-VAE: argmin_sigma NLL = MSE, no gradient
        else:
            var = torch.tensor(c.sigma ** 2, device=x.device)
        return 0.5 * (sq / var + torch.log(2 * math.pi * var)).sum(1)

    def mse(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.to_image(out).detach(), x)

    def forward_terms(self, batch: dict):
        """(x, mu, logvar, z, decoder output) of a batch."""
        x = images_of(batch)
        mu, logvar = self.posterior(x)
        z = self.reparameterise(mu, logvar)
        return x, mu, logvar, z, self.decoder(z)


@register("vae", VAEConfig)
class VAE(_GaussianVAE):
    """VAE / beta-VAE: E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I)) (lecture 002, "Interpretation
    of the loss function"; Zou Eq. 2.4-2.5 and 2.28). With ``kl_warmup_steps`` > 0 the KL weight is
    beta * min(1, step / kl_warmup_steps)."""

    def kl_weight(self, step: int) -> float:
        c = self.config
        if c.kl_warmup_steps <= 0:
            return c.beta
        return c.beta * min(1.0, step / c.kl_warmup_steps)

    def _vae_terms(self, x, mu, logvar, out, step: int) -> dict:
        nll = self.nll(x, out).mean()
        kl = kl_normal(mu, logvar).mean()
        beta = self.kl_weight(step)
        return {"loss": nll + beta * kl, "nll": nll.detach(), "kl": kl.detach(),
                "beta": torch.tensor(beta, device=x.device), "mse": self.mse(x, out)}

    def loss(self, batch: dict, step: int = 0) -> dict:
        x, mu, logvar, z, out = self.forward_terms(batch)
        return self._vae_terms(x, mu, logvar, out, step)


@register("beta_vae", BetaVAEConfig)
class BetaVAE(VAE):
    """beta-VAE (Higgins et al. 2017; Zou Eq. 2.28): ``vae`` with beta = 4 by default."""


@register("capacity_vae", CapacityVAEConfig)
class CapacityVAE(_GaussianVAE):
    """Capacity annealing (Burgess et al. 2018; Zou Eq. 2.29):
    E_q[-log p(x|z)] + gamma * |KL - C|, C = capacity_max * min(1, step / capacity_steps)."""

    def capacity(self, step: int) -> float:
        c = self.config
        if c.capacity_steps <= 0:
            return c.capacity_max
        return c.capacity_max * min(1.0, step / c.capacity_steps)

    def loss(self, batch: dict, step: int = 0) -> dict:
        x, mu, logvar, z, out = self.forward_terms(batch)
        nll = self.nll(x, out).mean()
        kl = kl_normal(mu, logvar).mean()
        cap = self.capacity(step)
        return {"loss": nll + self.config.gamma * (kl - cap).abs(), "nll": nll.detach(), "kl": kl.detach(),
                "capacity": torch.tensor(cap, device=x.device), "mse": self.mse(x, out)}


@register("tcvae", TCVAEConfig)
class TCVAE(_GaussianVAE):
    """beta-TCVAE (Chen et al. 2018, Sec. 3, objective with alpha, beta, gamma; Zou Eq. 2.30):
    E_q[-log p(x|z)] + alpha * MI + beta * TC + gamma * DWKL, each term estimated with minibatch
    weighted sampling (:func:`tc_mws`). ``dataset_size`` (N) only shifts the estimates of MI and
    DWKL by constants; it does not change the gradients."""

    def loss(self, batch: dict, step: int = 0) -> dict:
        c = self.config
        x, mu, logvar, z, out = self.forward_terms(batch)
        nll = self.nll(x, out).mean()
        mi, tc, dwkl = tc_mws(z, mu, logvar, c.dataset_size)
        return {"loss": nll + c.alpha * mi + c.beta * tc + c.gamma * dwkl, "nll": nll.detach(),
                "mi": mi.detach(), "tc": tc.detach(), "dwkl": dwkl.detach(),
                "kl": kl_normal(mu, logvar).mean().detach(), "mse": self.mse(x, out)}


def permute_dims(z: torch.Tensor, generator=None) -> torch.Tensor:
    """Samples of prod_d q(z_d): each dimension shuffled independently across the batch (Kim &
    Mnih 2018, Alg. 1)."""
    b, d = z.shape
    perm = torch.argsort(torch.rand(b, d, generator=generator, device=z.device), dim=0)
    return torch.gather(z, 0, perm)


@register("factorvae", FactorVAEConfig)
class FactorVAE(_GaussianVAE):
    """FactorVAE (Kim & Mnih 2018, Eq. 2-3 and Alg. 1; Zou ch. 2, FactorVAE, sign corrected):
    E_q[-log p(x|z)] + KL(q(z|x) || p(z)) + gamma * TC, with TC = KL(q(z) || prod_d q(z_d))
    estimated by the density-ratio trick, TC ~ E_q(z)[log D(z) / (1 - D(z))] = E[logit_0 - logit_1]
    for a discriminator D with two logits (0: z ~ q(z), 1: z ~ prod_d q(z_d)).

    Two phases on two parameter groups (:meth:`phases`): first ``disc``, the cross-entropy of D
    on the codes of the first half of the batch against the dimension-permuted codes of the
    second half (Alg. 1 draws the permuted codes from a second batch), then ``model``, the VAE
    objective on the first half against the updated D. Each engine batch therefore holds the two
    batches of Alg. 1: ``data.batch_size`` is twice the VAE's batch.
    """

    def __init__(self, config: FactorVAEConfig):
        super().__init__(config)
        layers, width = [], config.latent_dim
        for _ in range(config.disc_layers):
            layers += [nn.Linear(width, config.disc_hidden), nn.LeakyReLU(0.2)]
            width = config.disc_hidden
        self.discriminator = nn.Sequential(*layers, nn.Linear(width, 2))

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        disc = {id(p) for p in self.discriminator.parameters()}
        return {"model": [p for p in self.parameters() if p.requires_grad and id(p) not in disc],
                "disc": [p for p in self.discriminator.parameters() if p.requires_grad]}

    def phases(self) -> list[Phase]:
        return [Phase("disc", self.discriminator_loss), Phase("model", self.loss)]

    @staticmethod
    def halves(batch: dict) -> tuple[dict, dict]:
        """The two batches of Alg. 1: the first and second half of the images."""
        x = images_of(batch)
        if len(x) < 4:
            raise ConfigError(f"factorvae needs a batch of at least 4 images (two halves), got {len(x)}")
        h = (len(x) + 1) // 2
        return {"image": x[:h]}, {"image": x[h:]}

    def discriminator_loss(self, batch: dict, step: int = 0) -> dict:
        """0.5 [CE(D(z), 0) + CE(D(permute_dims(z')), 1)], z from the first half, z' from the second."""
        first, second = self.halves(batch)
        with torch.no_grad():
            z = self.reparameterise(*self.posterior(first["image"]))
            z2 = self.reparameterise(*self.posterior(second["image"]))
        real, perm = self.discriminator(z), self.discriminator(permute_dims(z2))
        loss = 0.5 * (F.cross_entropy(real, torch.zeros(len(z), dtype=torch.long, device=z.device))
                      + F.cross_entropy(perm, torch.ones(len(z2), dtype=torch.long, device=z.device)))
        disc_acc = 0.5 * ((real.argmax(1) == 0).float().mean() + (perm.argmax(1) == 1).float().mean())
        return {"loss": loss, "disc_acc": disc_acc.detach()}

    def loss(self, batch: dict, step: int = 0) -> dict:
        """The VAE objective on the first half; the engine steps only the ``model`` group on it."""
        c = self.config
        x, mu, logvar, z, out = self.forward_terms(self.halves(batch)[0])
        nll = self.nll(x, out).mean()
        kl = kl_normal(mu, logvar).mean()
        logits = self.discriminator(z)
        tc = (logits[:, 0] - logits[:, 1]).mean()
        return {"loss": nll + kl + c.gamma * tc, "nll": nll.detach(), "kl": kl.detach(), "tc": tc.detach(),
                "mse": self.mse(x, out)}
