"""CVQVAE: the conditional vector-quantised VAE (Zou thesis ch. 6, §6.3; digest D) and its
variants A-F (§6.3.4, Tab. 6.1).

Networks (§6.3.1, Fig. 6.1): C_phi (:class:`~mien.models.semisup.common.Trunk` and one linear
head) maps x to the label features c and the logits of q(y|x); E_phi
(:class:`~mien.nn.tokens.TokenEncoder`) maps (x, y-tokens) to z_e, an N_z x N_z map of
D-vectors; D_theta (:class:`~mien.nn.adain.TokenDecoder`) maps [flatten(z_q), one scalar token
per label, gated features] through one FC layer and token-fed residual blocks to the image.
Gating: ``y c`` for a label whose features exist only when y = 1 ("glasses" type) and
``[(1 - y) c_0, y c_1]`` for one with features for both values ("smile" type, ``two_sided``).

Posterior (Eq. 6.4): q(z_ij = k | x, y) = softmax_k(-||E_ij(x, y) - e_k||), the distance not
squared; p(z) uniform over the K codes, so KL(q(z|x,y) || p(z)) = sum_ij (log K - H(q_ij)).

Loss (§6.3.3, digest D.3), as a minimisation, per face:

    MSE(x, D(y, z_q, c)) + beta sum_ij (log K - H(q_ij)) - alpha log q(y|x) [labelled faces]
    + ||sg[z_e] - e_k*||^2 + 0.25 ||z_e - sg[e_k*]||^2

z is drawn from q(z|x,y) with straight-through Gumbel-softmax (hard samples, argmax(log q + g),
g ~ Gumbel(0, 1), which no temperature changes) and the reconstruction gradient is copied from z_q
to z_e, so it never reaches the codebook; the codebook and commitment terms use the nearest code k* (VQ-VAE's term,
van den Oord et al. 2017 Eq. 3). A hidden label is drawn from q(y|x) by Gumbel-softmax (``temperature``)
and the loss is otherwise unchanged. At test time z_ij is the nearest code and y = argmax q(y|x).

Variants (fields, presets ``configs/cvqvae/variant_{a..f}.yaml``): A ``features: false,
posterior: onehot`` (VQ-VAE's one-hot posterior, whose KL is the constant N_z^2 log K; M2's
structure); B ``features: false`` (Eq. 6.4); C the model as above; D ``latent: gaussian``
(CGVAE: q(z|x,y) Gaussian, a linear map of flatten(z_e) to S_z = ``z_dim`` = 100 means and log-variances, p(z) = N(0, I), beta KL in place of the
entropy term, ``adain: true``); E = C trained in two steps; F = D without AdaIN and S_z = 1024
(CGVAE2), in two steps. Two-step training (§6.3.4): ``pretrained`` names a trained variant-D
checkpoint whose C_phi and tokens start this model (copied before step 0), and the engine leaves
them out of the optimised group for the first ``freeze_steps`` steps (:meth:`phases`).

Departures: ``code_scale`` s multiplies the distances, q(z_ij = k) = softmax_k(-s ||E_ij - e_k||);
s = 1 is Eq. 6.4, the small presets use s = 8. Eq. 6.4's sharpness depends on the scale of the
code space, which no term sets (the codebook and commitment terms shrink it, the beta-weighted KL
flattens q, the reconstruction gradient copied to z_e never sees q): at s = 1 on 32 px faces the
posterior stays flat (docs/cvqvae/README.md: the top code holds 1 % of q after 300 steps), so the
sampled codes the decoder trains on are near random. C_phi's "single FC layer" is here the trunk's FC layer of ``hidden`` units and a linear
head (the backbone of M2 and JDVAE); in a multi-label model mixing the two kinds, every label's c
has 2 N_c components and a glasses-type one is gated whole by y. Sampling (not done in the
thesis, digest D.5) draws y ~ p(y), the code indices uniformly and c from Gaussians p(c | y)
fitted to the labelled faces during training (running moments, buffers ``feature_mean`` and
``feature_var``), which also give the features of a label flip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from mien.config import NonNegative, NonNegativeInt, Positive, PositiveInt, Range
from mien.errors import ConfigError
from mien.models.base import Phase, images_of, register
from mien.models.checkpoint import read_weights
from mien.models.semisup.common import (SemiSupConfig, SemiSupModel, Trunk, batch_targets, gumbel_noise, gumbel_softmax,
                                        label_log_likelihood, prior_labels, randn, reparameterise, split_gaussian)
from mien.models.vae import kl_normal
from mien.models.vqvae import perplexity, pick_vectors, squared_distances
from mien.nn.adain import TokenDecoder
from mien.nn.conv import check_geometry
from mien.nn.tokens import TokenEncoder

LATENTS = ("vq", "gaussian")
POSTERIORS = ("softmax", "onehot")
MOMENT_RATE = 0.01  # the running moments of p(c | y) follow the last ~100 updates


@dataclass
class CVQVAEConfig(SemiSupConfig):
    """encoder_widths: E_phi's channels per level (N_z = image_size / 2^len); widths, blocks: those
    of C_phi and D_theta; num_codes K (512), code_dim D (16); feature_dim N_c (16); two_sided: the
    labels whose features exist for both values (smile type; the others are glasses type);
    features: false drops c (variants A, B); latent: vq or gaussian (variants D, F, with z_dim =
    S_z); posterior: softmax (Eq. 6.4) or onehot (variant A); commitment: the weight of the
    commitment term (0.25); code_scale: s of q = softmax(-s ||E - e_k||) (1 = Eq. 6.4); pretrained, freeze_steps: two-step training (a variant-D checkpoint; steps C_phi and the tokens
    stay frozen). temperature, gumbel_hard: the Gumbel-softmax of a hidden label."""

    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    encoder_widths: list[int] = field(default_factory=lambda: [32, 64])
    adain: bool = False
    num_codes: Annotated[int, Range(int, 2)] = 512
    code_dim: PositiveInt = 16
    feature_dim: PositiveInt = 16
    two_sided: list[str] = field(default_factory=list)
    features: bool = True
    latent: str = "vq"
    posterior: str = "softmax"
    commitment: NonNegative = 0.25
    code_scale: Positive = 1.0
    pretrained: str | None = None
    freeze_steps: NonNegativeInt = 0

    def __post_init__(self):
        super().__post_init__()
        if self.unlabelled != "gumbel":
            raise ConfigError("cvqvae samples a hidden label by Gumbel-softmax (Zou §6.3.3); drop model.unlabelled")
        if self.latent not in LATENTS:
            raise ConfigError(f"model.latent {self.latent!r} is unknown; choose vq or gaussian (Zou §6.3.4)")
        if self.posterior not in POSTERIORS:
            raise ConfigError(f"model.posterior {self.posterior!r} is unknown; choose softmax (Eq. 6.4) or onehot")
        unknown = [n for n in self.two_sided if n not in self.labels]
        if unknown:
            raise ConfigError(f"model.two_sided names {unknown[0]!r}, which is not in model.labels ({', '.join(self.labels)})")
        check_geometry(self.image_size, self.encoder_widths)


def entropy_kl(logits: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x,y) || uniform) = sum_ij (log K - H(q_ij)) per face, logits B x N_z x N_z x K."""
    lp = torch.log_softmax(logits, -1)
    return (math.log(logits.shape[-1]) + (lp.exp() * lp).sum(-1)).flatten(1).sum(1)


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """z_q forward, the gradient copied to z_e backward: z_e + sg[z_q - z_e]."""
    return z_e + (z_q - z_e).detach()


def codebook_terms(z_e: torch.Tensor, e_star: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """||sg[z_e] - e_k*||^2 and ||z_e - sg[e_k*]||^2 (van den Oord et al. 2017 Eq. 3), means per face."""
    return ((z_e.detach() - e_star).pow(2).flatten(1).mean(1), (z_e - e_star.detach()).pow(2).flatten(1).mean(1))


def gate_features(c: torch.Tensor, y: torch.Tensor, two_sided: torch.Tensor) -> torch.Tensor:
    """The decoder's features (§6.3.1) of c (B x L x w) and y (B x L in [0, 1]): y c for a
    glasses-type label, [(1 - y) c_0, y c_1] (halves of c) for a two-sided (smile-type) one."""
    y = y[..., None]
    half = c.shape[-1] // 2
    split = torch.cat([(1 - y).expand(-1, -1, half), y.expand(-1, -1, c.shape[-1] - half)], -1)
    mask = torch.where(two_sided[None, :, None], split, y.expand_as(c))
    return (mask * c).flatten(1)


@register("cvqvae", CVQVAEConfig)
class CVQVAE(SemiSupModel):
    """CVQVAE and variants A-F: parts y (L), z (z_q flattened, D N_z^2 values, or the Gaussian
    z of z_dim) and c (L x w, w = N_c, or 2 N_c with a two-sided label); a swap exchanges (y, c)."""

    def __init__(self, config: CVQVAEConfig):
        super().__init__(config)
        c, n = config, len(config.labels)
        self.m = check_geometry(c.image_size, c.encoder_widths)
        self.width = (2 if c.two_sided else 1) * c.feature_dim if c.features else 0
        self.register_buffer("two_sided", torch.tensor([name in c.two_sided for name in c.labels]))
        self.label_parts = ("y", "c") if c.features else ("y",)
        self.feature_part = "c" if c.features else None
        self.feature_net = Trunk(c)  # C_phi
        self.feature_head = nn.Linear(c.hidden, 2 * n + n * self.width)
        self.encoder = TokenEncoder(c.image_size, c.in_channels, c.encoder_widths, c.code_dim, n, c.token_channels, c.blocks)
        if c.latent == "vq":
            k = c.num_codes
            self.codebook = nn.Parameter(torch.empty(k, c.code_dim).uniform_(-1 / k, 1 / k))
            self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        else:
            self.z_head = nn.Linear(c.code_dim * self.m * self.m, 2 * c.z_dim)
        self.decoder = TokenDecoder(c.image_size, c.in_channels, c.widths, n * self.width, self.z_size, n,
                                    tokens=c.tokens, adain=c.adain, token_channels=c.token_channels, blocks=c.blocks)
        self.register_buffer("feature_mean", torch.zeros(n, 2, self.width))
        self.register_buffer("feature_var", torch.ones(n, 2, self.width))
        self.register_buffer("feature_updates", torch.zeros(n, 2))

    @property
    def z_size(self) -> int:
        c = self.config
        return c.code_dim * self.m * self.m if c.latent == "vq" else c.z_dim

    def parts(self):
        out = {"y": (self.n_labels,), "z": (self.z_size,)}
        return {**out, "c": (self.n_labels, self.width)} if self.config.features else out

    # --- C_phi: q(y|x) and c -------------------------------------------------------------------------
    def classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits of q(y|x), B x L x 2; c, B x L x w)."""
        h = self.feature_head(self.feature_net(x))
        n = self.n_labels
        return h[:, :2 * n].view(-1, n, 2), h[:, 2 * n:].reshape(len(h), n, self.width)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(x)[0].argmax(-1).float()

    # --- E_phi and the codebook ----------------------------------------------------------------------
    def code_logits(self, z_e: torch.Tensor) -> torch.Tensor:
        """-s ||E_ij - e_k|| (Eq. 6.4, unsquared; s = ``code_scale``, 1 in the thesis) for z_e
        B x D x N_z x N_z: B x N_z x N_z x K."""
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])
        d = squared_distances(flat, self.codebook).clamp_min(1e-12).sqrt()
        return -self.config.code_scale * d.view(z_e.shape[0], self.m, self.m, -1)

    def lookup(self, onehot: torch.Tensor) -> torch.Tensor:
        """One-hot (or index) maps B x N_z x N_z (x K) -> z_q B x D x N_z x N_z."""
        if onehot.dim() == 3:
            return F.embedding(onehot, self.codebook).permute(0, 3, 1, 2)
        return (onehot @ self.codebook).permute(0, 3, 1, 2)

    def gaussian(self, z_e: torch.Tensor):
        """(mu, logvar) of q(z|x,y) for the Gaussian variants D and F."""
        return split_gaussian(self.z_head(z_e.flatten(1)))

    def encode_parts(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict:
        """y = argmax q(y|x) unless given; z the nearest codes (or the Gaussian mean); c = C_phi(x)."""
        logits, c = self.classify(x)
        y = logits.argmax(-1).float() if y is None else y.float().to(x.device)
        z_e = self.encoder(x, y)
        if self.config.latent == "vq":
            z = self.lookup(self.code_logits(z_e).argmax(-1)).flatten(1)
        else:
            z = self.gaussian(z_e)[0]
        return {"y": y, "z": z, "c": c} if self.config.features else {"y": y, "z": z}

    def decode_parts(self, parts: dict) -> torch.Tensor:
        y = parts["y"].float()
        feats = gate_features(parts["c"], y, self.two_sided) if self.config.features else y.new_zeros(len(y), 0)
        return self.decoder(feats, parts["z"], y)

    def flip_features(self, parts: dict, label: int, y_new: torch.Tensor) -> dict:
        """c of the label set to the mean of the fitted p(c | y_new)."""
        if not self.config.features:
            return parts
        c = parts["c"].clone()
        c[:, label] = self.feature_mean[label, y_new.long()]
        return {**parts, "c": c}

    def sample(self, n: int, cond=None, generator=None) -> dict:
        """y ~ p(y) (or ``cond``), code indices uniform (Gaussian variants: z ~ N(0, I)), c ~ the
        fitted N(feature_mean[y], feature_var[y]); ``label`` holds y (B, or B x L)."""
        y = prior_labels(n, self.n_labels, cond, generator, self.device)
        if self.config.latent == "vq":
            g_device = generator.device if generator is not None else "cpu"
            idx = torch.randint(self.config.num_codes, (n, self.m, self.m), generator=generator, device=g_device)
            parts = {"y": y, "z": self.lookup(idx.to(self.device)).flatten(1)}
        else:
            parts = {"y": y, "z": randn((n, self.z_size), generator, self.device)}
        if self.config.features:
            idx = y.long()[..., None, None].expand(-1, -1, 1, self.width)
            mean = self.feature_mean.expand(n, -1, -1, -1).gather(2, idx)[:, :, 0]
            var = self.feature_var.expand(n, -1, -1, -1).gather(2, idx)[:, :, 0]
            parts["c"] = mean + var.sqrt() * randn(tuple(mean.shape), generator, self.device)
        label = y.long()[:, 0] if self.n_labels == 1 else y.long()
        return {"image": self.decode_parts(parts), "label": label}

    # --- training: two steps, data statistics, the loss ----------------------------------------------
    def two_step_names(self) -> list[str]:
        """The parameters of two-step training (§6.3.4): C_phi and the tokens of E_phi and D_theta."""
        return [n for n, _ in self.named_parameters() if n.startswith(("feature_net.", "feature_head.")) or "tokens" in n]

    def param_groups(self):
        everything = [p for p in self.parameters() if p.requires_grad]
        if not self.config.freeze_steps:
            return {"model": everything}
        frozen = set(self.two_step_names())
        return {"model": everything, "unfrozen": [p for n, p in self.named_parameters() if n not in frozen]}

    def phases(self) -> list[Phase]:
        """With ``freeze_steps`` = s: the loss on everything but C_phi and the tokens for steps < s,
        then on every parameter (two-step training, §6.3.4)."""
        s = self.config.freeze_steps
        if not s:
            return [Phase("model", self.loss)]
        return [Phase("unfrozen", self.loss, name="model", stop=s), Phase("model", self.loss, start=s)]

    @torch.no_grad()
    def fit_data(self, batch: dict) -> dict:
        """Before step 0: copy C_phi and the tokens from ``pretrained`` (two-step training), then
        start the codebook from encoder vectors of the first batch (y = argmax q(y|x))."""
        out = {}
        if self.config.pretrained:
            theirs, ours = read_weights(self.config.pretrained), self.state_dict()
            names = self.two_step_names()
            bad = [n for n in names if n not in theirs or theirs[n].shape != ours[n].shape]
            if bad:
                raise ConfigError(f"model.pretrained {self.config.pretrained} has no weight {bad[0]} of this shape; "
                                  "train variant D with the same labels, widths, encoder_widths and feature_dim first")
            self.load_state_dict({n: theirs[n] for n in names}, strict=False)
            out["pretrained"] = {"folder": str(self.config.pretrained), "copied": len(names)}
        if self.config.latent == "vq" and not bool(self.initialised):
            x = images_of(batch)
            z_e = self.encoder(x, self.predict(x))
            self.codebook.data.copy_(pick_vectors(z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1]), self.config.num_codes))
            self.initialised.fill_(True)
            out["codebook_init"] = "encoder vectors of the first batch"
        return out

    @torch.no_grad()
    def update_moments(self, c: torch.Tensor, y: torch.Tensor, sup: torch.Tensor) -> None:
        """Running mean and variance of c per label and class over the labelled faces."""
        for l in range(self.n_labels):
            for v in (0, 1):
                rows = c[sup & (y[:, l] == v), l]
                if len(rows) < 2:
                    continue
                self.feature_updates[l, v] += 1
                rate = max(1 / float(self.feature_updates[l, v]), MOMENT_RATE)
                self.feature_mean[l, v].lerp_(rows.mean(0), rate)
                self.feature_var[l, v].lerp_(rows.var(0), rate)

    def latent_terms(self, z_e: torch.Tensor) -> dict:
        """z for the decoder and the per-face terms of q(z|x,y): ``kl`` (entropy KL or Gaussian KL),
        ``codebook`` and ``commitment`` (0 for a Gaussian z), the nearest codes ``k`` and ``top``, the
        mean of max_k q(z_ij = k)."""
        c = self.config
        if c.latent == "gaussian":
            mu, logvar = self.gaussian(z_e)
            zero = torch.zeros(len(z_e), device=z_e.device)
            return {"z": reparameterise(mu, logvar), "kl": kl_normal(mu, logvar), "codebook": zero, "commitment": zero}
        logits = self.code_logits(z_e)
        nearest = logits.argmax(-1)
        e_star = self.lookup(nearest)
        if c.posterior == "onehot":  # VQ-VAE: z = the nearest code, KL the constant N_z^2 log K
            z_q, kl = e_star, torch.full((len(z_e),), self.m * self.m * math.log(c.num_codes), device=z_e.device)
        else:
            z_q = self.lookup((logits.detach() + gumbel_noise(logits)).argmax(-1))  # a hard Gumbel-max sample of q
            kl = entropy_kl(logits)
        codebook, commitment = codebook_terms(z_e, e_star)
        return {"z": straight_through(z_e, z_q).flatten(1), "kl": kl, "codebook": codebook,
                "commitment": commitment, "k": nearest,
                "top": logits.new_ones(()) if c.posterior == "onehot" else logits.detach().softmax(-1).amax(-1).mean()}

    def loss(self, batch: dict, step: int = 0) -> dict:
        c = self.config
        x = images_of(batch)
        y_true, sup = batch_targets(c, batch)
        logits, feats = self.classify(x)
        y = y_true
        if not sup.all():
            y = torch.where(sup[:, None], y_true, gumbel_softmax(logits, c.temperature, c.gumbel_hard))
        terms = self.latent_terms(self.encoder(x, y))
        parts = {"y": y, "z": terms["z"], "c": feats}
        mse = (x - self.decode_parts(parts)).pow(2).flatten(1).mean(1)
        label = label_log_likelihood(logits, y_true) * sup.float()
        per_face = mse + c.beta * terms["kl"] - c.alpha * label + terms["codebook"] + c.commitment * terms["commitment"]
        if self.training and c.features:
            self.update_moments(feats.detach(), y_true, sup)
        hits = (logits.argmax(-1).float() == y_true).float().mean(1)
        out = {"loss": per_face.mean(), "mse": mse.mean().detach(), "kl_z": terms["kl"].mean().detach(),
               "codebook": terms["codebook"].mean().detach(), "commitment": terms["commitment"].mean().detach(),
               "label_acc": ((hits * sup.float()).sum() / sup.float().sum().clamp_min(1)).detach(),
               "supervised": sup.float().mean()}
        if "k" in terms:
            usage = F.one_hot(terms["k"].flatten(), c.num_codes).float().mean(0)
            out.update(perplexity=perplexity(usage).detach(), codes_used=(usage > 0).float().mean().detach(),
                       posterior_top=terms["top"])  # the mean of max_k q(z_ij = k): 1 / K flat, 1 one-hot
        return out
