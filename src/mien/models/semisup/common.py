"""What the semi-supervised families (M2, CCVAE, JDVAE) share: the config with the labels and the
weights of Zou Eq. 5.4, how labels and the supervision mask are read from a batch, the encoder
trunk, Gumbel-softmax, and the closed-form terms.

Conventions (Zou thesis §5.3.2, digest C.2): the Gaussian decoder has v = 1 and the criterion is
divided by the N pixel values, so the reconstruction term is ||x - x_hat||^2 / (2N) per image;
every other ELBO term (KL divergences, log p(y), entropies) is weighed by ``beta`` and the
classification term -log q(y|x) of labelled faces by ``alpha``. Labels are binary; y is held as a
B x L tensor of P(y_l = 1) (hard labels are 0/1, Gumbel-softmax samples lie in between).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mien.errors import ConfigError
from mien.models.base import GenerativeModel, ImageConfig, images_of
from mien.models.vae import LOGVAR_RANGE
from mien.nn.conv import ConvEncoder, check_geometry

UNLABELLED = ("enumerate", "gumbel")


@dataclass
class SemiSupConfig(ImageConfig):
    """Fields of every semi-supervised family.

    labels: the binary labels learnt (names in the data's factor schema; several labels give the
    multi-label model of §5.4 with factorised q(y|x)); z_dim: size of z (100 in §5.4); hidden:
    width of the encoder's FC layer; alpha, beta: the weights of Eq. 5.4 (alpha = 1, beta = 1e-4);
    unlabelled: how a face with a hidden label is treated, ``enumerate`` (sum over y, the exact
    M2 bound, Kingma et al. 2014 Eq. 7) or ``gumbel`` (y sampled from q(y|x) with a
    Gumbel-softmax relaxation of ``temperature``, §5.3.2; ``gumbel_hard`` takes straight-through
    one-hot samples); adain, tokens, token_channels: the decoder of Fig. 5.1 and its ablations."""

    labels: list[str] = field(default_factory=lambda: ["glasses"])
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    blocks: int = 0
    z_dim: int = 100
    hidden: int = 256
    alpha: float = 1.0
    beta: float = 1.0e-4
    unlabelled: str = "gumbel"
    temperature: float = 0.5
    gumbel_hard: bool = False
    adain: bool = True
    tokens: bool = True
    token_channels: int = 1

    def __post_init__(self):
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ConfigError("model.labels must name at least one label, each once (e.g. [glasses])")
        if self.unlabelled not in UNLABELLED:
            raise ConfigError(f"model.unlabelled {self.unlabelled!r} is unknown; choose one of {', '.join(UNLABELLED)}")
        for name in ("z_dim", "hidden", "token_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("alpha", "beta"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ConfigError(f"model.temperature must be > 0 (the Gumbel-softmax temperature), got {self.temperature}")
        check_geometry(self.image_size, self.widths)

    @classmethod
    def from_data(cls, section: dict, data) -> "SemiSupConfig":
        """Check that every label is a binary factor of the data's schema."""
        schema = {f.name: f for f in getattr(data, "factors", []) or []}
        if schema:
            for name in section.get("labels", cls.__dataclass_fields__["labels"].default_factory()):
                if name not in schema:
                    raise ConfigError(f"model.labels names {name!r}, which the data does not label; add it to "
                                      f"data.labels or choose a binary factor ({', '.join(n for n, f in schema.items() if f.kind == 'binary')})")
                if schema[name].kind != "binary":
                    raise ConfigError(f"label {name!r} is {schema[name].kind}; the semi-supervised models take binary labels")
        return super().from_data(section, data)


def batch_targets(config: SemiSupConfig, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, supervised) of a batch: y the B x L labels (float 0/1; arbitrary where unsupervised),
    supervised the B bool mask (``batch["supervised"]``; every face when absent)."""
    x = images_of(batch)
    factors = batch.get("factors", {})
    missing = [n for n in config.labels if n not in factors]
    if missing:
        raise ConfigError(f"the data has no label {missing[0]!r}; add it to data.labels or change model.labels")
    y = torch.stack([torch.as_tensor(factors[n]).float() for n in config.labels], 1).to(x.device)
    if ((y != 0) & (y != 1)).any():
        raise ConfigError(f"labels {', '.join(config.labels)} must be binary (0 or 1)")
    sup = batch.get("supervised")
    sup = torch.ones(len(x), dtype=torch.bool, device=x.device) if sup is None else torch.as_tensor(sup).bool().to(x.device)
    return y, sup


def one_hot(y: torch.Tensor) -> torch.Tensor:
    """B x L probabilities of y_l = 1 -> B x 2L, [1 - y_1, y_1, 1 - y_2, y_2, ...]."""
    return torch.stack([1 - y, y], dim=2).flatten(1)


def gumbel_noise(logits: torch.Tensor) -> torch.Tensor:
    """g ~ Gumbel(0, 1) of the shape of ``logits``: -log(-log(u)), u ~ U(0, 1)."""
    return -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-10, 1 - 1e-10)))


def gumbel_softmax(logits: torch.Tensor, temperature: float, hard: bool = False) -> torch.Tensor:
    """A relaxed sample of binary labels from logits B x L x 2 (Jang et al. 2017; Maddison et al.
    2017): softmax((logits + g) / tau), g ~ Gumbel(0, 1); ``hard`` gives the one-hot argmax with the
    relaxed sample's gradient (straight-through). Returns B x L values of the class-1 coordinate."""
    soft = torch.softmax((logits + gumbel_noise(logits)) / temperature, dim=-1)
    if hard:
        one = F.one_hot(soft.argmax(-1), 2).to(soft)
        soft = one + soft - soft.detach()
    return soft[..., 1]


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log q(y_l = k | x) of logits B x L x 2."""
    return torch.log_softmax(logits, dim=-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(q(y|x)) = -sum_l sum_k q log q per face (factorised over labels)."""
    lp = log_probs(logits)
    return -(lp.exp() * lp).sum((1, 2))


def label_log_likelihood(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log q(y|x) = sum_l log q(y_l|x) for hard labels y (B x L of 0/1)."""
    lp = log_probs(logits)
    return (y * lp[..., 1] + (1 - y) * lp[..., 0]).sum(1)


def kl_gaussians(mu, logvar, prior_mu, prior_logvar) -> torch.Tensor:
    """KL(N(mu, diag e^logvar) || N(prior_mu, diag e^prior_logvar)), summed over the last axis:
    1/2 sum(prior_logvar - logvar + (e^logvar + (mu - prior_mu)^2) / e^prior_logvar - 1)."""
    return 0.5 * (prior_logvar - logvar + (logvar.exp() + (mu - prior_mu).pow(2)) / prior_logvar.exp() - 1).sum(-1)


def reconstruction(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """||x - x_hat||^2 / (2N) per image: -log N(x; x_hat, I) / N up to a constant (Eq. 5.2, 5.4)."""
    return 0.5 * (x - x_hat).pow(2).flatten(1).mean(1)


def log_uniform_prior(n_labels: int) -> float:
    """log p(y) of the uniform prior over L binary labels: -L log 2."""
    return -n_labels * math.log(2)


def label_combinations(n_labels: int, device=None) -> torch.Tensor:
    """Every y of L binary labels: 2^L x L (row c holds the bits of c)."""
    c = torch.arange(2 ** n_labels, device=device)
    return ((c[:, None] >> torch.arange(n_labels, device=device)) & 1).float()


def split_gaussian(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, logvar = h.chunk(2, dim=-1)
    return mu, logvar.clamp(*LOGVAR_RANGE)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class Trunk(nn.Module):
    """The encoder's shared part: conv stack (``mien.nn.conv``) -> flatten -> FC -> SiLU, giving
    the features that the heads q(y|x), q(z|x,y), q(u|x,y) read (Fig. 5.1's encoder; how y enters
    it is unspecified, digest C.1: one-hot y is concatenated before the FC heads)."""

    def __init__(self, config: SemiSupConfig):
        super().__init__()
        s = check_geometry(config.image_size, config.widths)
        self.conv = ConvEncoder(config.in_channels, config.widths, config.blocks)
        self.fc = nn.Sequential(nn.Linear(config.widths[-1] * s * s, config.hidden), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


def prior_labels(n: int, n_labels: int, cond, generator=None, device=None) -> torch.Tensor:
    """n x L labels for sampling: drawn from the uniform p(y), or ``cond`` (0/1 per label, one row
    for all samples, or an n x L tensor)."""
    if cond is None:
        g_device = generator.device if generator is not None else "cpu"
        return (torch.rand(n, n_labels, generator=generator, device=g_device) < 0.5).float().to(device)
    y = torch.as_tensor(cond, dtype=torch.float32, device=device)
    y = y.reshape(1, -1).expand(n, -1) if y.dim() <= 1 else y
    if y.shape != (n, n_labels) or ((y != 0) & (y != 1)).any():
        raise ConfigError(f"cond must give 0 or 1 for each of the {n_labels} labels, got shape {tuple(y.shape)}")
    return y.clone()


def randn(shape, generator=None, device=None) -> torch.Tensor:
    g_device = generator.device if generator is not None else "cpu"
    return torch.randn(*shape, generator=generator, device=g_device).to(device)


class SemiSupModel(GenerativeModel):
    """Base of the three families: a latent made of named parts (``parts()``: name -> shape per
    face, label axis first for the parts that belong to a label), ``encode_parts`` /
    ``decode_parts`` on dicts of them, and ``encode`` / ``decode`` on the flat concatenation (so the
    generic verbs, traverse and interpolate, work in the space ``z`` of :meth:`latent_spaces`).

    ``label_parts`` are the parts a swap exchanges (Zou §5.4: (y, u) for JDVAE); ``feature_part``
    is the part holding the label features that the magnitude edit scales (None when the model has
    no features, as M2)."""

    label_parts: tuple[str, ...] = ()
    feature_part: str | None = None

    @property
    def n_labels(self) -> int:
        return len(self.config.labels)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def parts(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def latent_spaces(self) -> dict[str, tuple[int, ...]]:
        """``z``: the flat code [parts in order] that ``encode`` gives and ``decode`` takes; one
        space per part as well (``y``, ``z_id`` for z, ``u`` / ``zc``)."""
        shapes = self.parts()
        flat = sum(math.prod(s) for s in shapes.values())
        return {"z": (flat,), **{("z_id" if k == "z" else k): v for k, v in shapes.items()}}

    def flatten(self, parts: dict) -> torch.Tensor:
        return torch.cat([parts[k].flatten(1) for k in self.parts()], dim=1)

    def unflatten(self, code: torch.Tensor) -> dict:
        out, i = {}, 0
        for k, shape in self.parts().items():
            n = math.prod(shape)
            out[k] = code[:, i:i + n].reshape(-1, *shape)
            i += n
        if i != code.shape[1]:
            raise ConfigError(f"{self.model_name} codes have {i} values, got {code.shape[1]}")
        return out

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The flat code of ``x`` with predicted labels (y = argmax q(y|x), means elsewhere)."""
        return self.flatten(self.encode_parts(x))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decode_parts(self.unflatten(code))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_parts(self.encode_parts(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """argmax q(y|x): B x L labels (0/1)."""
        raise NotImplementedError

    def flip_features(self, parts: dict, label: int, y_new: torch.Tensor) -> dict:
        """The features of label ``label`` after its y is set to ``y_new`` (a label flip): the mean
        of the prior of the features given the new label; nothing for a model without features."""
        return parts
