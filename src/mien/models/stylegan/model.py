"""StyleGAN2 (Karras et al. 2020; Haas thesis Ch. 2.1-2.3, digest §1.1-1.2) and its conditional
and information-maximising variants (Zou thesis Ch. 2: cGAN Eq. 2.39, InfoGAN Eqs. 2.34-2.35), one
family trained by the engine's phases:

    phase  group  every  loss
    D      D      1      d_logistic(D(aug(x)), D(aug(G(z))))          (+ InfoGAN's Q on G(z))
    r1     D      16     gamma / 2 * R1, lazy                          (Mescheder et al. 2018)
    G      G      1      g_nonsaturating(D(aug(G(z)))), style mixing    (+ lambda * info_nll)
    pl     G      4      pl_weight * path-length penalty, lazy          (Karras et al. 2020, Eq. 4)

The engine's EMA averages the generator only (``train.ema_kimg`` gives StyleGAN2's half-life in
thousands of images). Latent spaces exposed to ``mien.control``: ``z`` (with InfoGAN's codes
appended), ``w``, ``w+`` (num_ws x w_dim) and ``s`` (every style layer's s concatenated,
StyleSpace, Wu et al. 2021).

Departures: the discriminator's R1 and main losses run as separate phases (StyleGAN2-ADA sums
them on R1 steps); InfoGAN's Q head is trained in the D phase on detached fakes and the generator
in the G phase (one optimiser per player instead of a third optimiser).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mien.errors import ConfigError
from mien.models.base import ConditionalConfig, batch_labels, GenerativeModel, Phase, condition_labels, images_of, register
from mien.models.stylegan import augment as ada
from mien.models.stylegan.losses import (code_entropy, d_logistic, g_nonsaturating, info_nll, path_length_penalty,
                                         r1_penalty)
from mien.nn.gan_discriminator import Discriminator
from mien.nn.stylegan import MappingNetwork, Synthesis


@dataclass
class StyleGANConfig(ConditionalConfig):
    """StyleGAN2 generator and discriminator.

    widths: synthesis channels at resolutions 4, 8, ..., image_size (one per resolution);
    d_widths: discriminator channels at image_size, ..., 4 (default: ``widths`` reversed);
    blocks: must be 1 (one block per resolution, as StyleGAN2);
    z_dim, w_dim: sizes of Z and W; mapping_layers, mapping_lr_mul: depth and learning-rate
    multiplier of the mapping network (8 and 0.01 in StyleGAN2);
    resample: ``fir`` ([1, 3, 3, 1] filter, StyleGAN2) or ``bilinear``; fused: grouped-convolution
    modulation (same output; slower on CPU);
    w_avg_beta: decay of the tracked mean w (truncation's centre);
    truncation_psi, truncation_cutoff: sampling's w' = w_avg + psi (w - w_avg) on the first
    ``cutoff`` style inputs (None: all), Eqs. 2.18-2.19;
    style_mixing: probability of mixing two codes at a random crossover during training;
    r1_gamma, r1_every: the R1 weight (loss gamma / 2 * R1) and its lazy period;
    pl_weight, pl_every, pl_decay, pl_batch_shrink: the path-length regulariser (weight 0 = off);
    mbstd_group: group size of the minibatch standard deviation layer;
    augment: ``none``, ``fixed`` (probability augment_p) or ``ada`` (adaptive, from augment_p,
    towards E sign D(x) = ada_target, adjusted every ada_interval steps by at most batch *
    ada_interval / (ada_kimg * 1000));
    info_categorical, info_continuous, info_weight: InfoGAN's codes (classes per categorical code;
    number of continuous codes, uniform on [-1, 1]) and lambda;
    condition (with num_classes, class_names from the data): the cGAN label."""

    widths: list[int] = field(default_factory=lambda: [64, 64, 32, 16])
    d_widths: list[int] = field(default_factory=list)
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    mapping_lr_mul: float = 0.01
    resample: str = "fir"
    fused: bool = False
    w_avg_beta: float = 0.995
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    style_mixing: float = 0.9
    r1_gamma: float = 10.0
    r1_every: int = 16
    pl_weight: float = 2.0
    pl_every: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    mbstd_group: int = 4
    augment: str = "none"
    augment_p: float = 0.0
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 100.0
    info_categorical: list[int] = field(default_factory=list)
    info_continuous: int = 0
    info_weight: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        expected = 1 + (self.image_size // 4).bit_length() - 1
        if self.image_size < 4 or self.image_size & (self.image_size - 1):
            raise ConfigError(f"a StyleGAN needs a power-of-two image size >= 4, got {self.image_size}")
        if len(self.widths) != expected:
            raise ConfigError(f"model.widths needs one channel count per resolution 4 .. {self.image_size} "
                              f"({expected} numbers), got {len(self.widths)}")
        self.d_widths = list(self.d_widths or reversed(self.widths))
        if len(self.d_widths) != expected:
            raise ConfigError(f"model.d_widths needs {expected} channel counts ({self.image_size} .. 4)")
        checks = {"blocks": self.blocks == 1, "resample": self.resample in ("fir", "bilinear"),
                  "augment": self.augment in ("none", "fixed", "ada"), "augment_p": 0 <= self.augment_p <= 1,
                  "z_dim": self.z_dim >= 1, "w_dim": self.w_dim >= 1, "mapping_layers": self.mapping_layers >= 1,
                  "mapping_lr_mul": self.mapping_lr_mul > 0, "w_avg_beta": 0 <= self.w_avg_beta < 1,
                  "style_mixing": 0 <= self.style_mixing <= 1, "r1_gamma": self.r1_gamma >= 0,
                  "pl_weight": self.pl_weight >= 0, "pl_batch_shrink": self.pl_batch_shrink >= 1,
                  "pl_decay": 0 < self.pl_decay <= 1, "r1_every": self.r1_every >= 1, "pl_every": self.pl_every >= 1,
                  "ada_interval": self.ada_interval >= 1, "ada_kimg": self.ada_kimg > 0,
                  "info_categorical": all(k >= 2 for k in self.info_categorical),
                  "info_continuous": self.info_continuous >= 0, "info_weight": self.info_weight >= 0,
                  "truncation_cutoff": self.truncation_cutoff is None or self.truncation_cutoff >= 0,
                  "mbstd_group": self.mbstd_group >= 1, "widths": min(self.widths + self.d_widths) >= 1}
        bad = next((k for k, ok in checks.items() if not ok), None)
        if bad:
            raise ConfigError(f"model.{bad} = {getattr(self, bad)!r} is out of range; see the StyleGANConfig docstring")

    @property
    def code_dim(self) -> int:
        """InfoGAN's code size: one-hot categorical codes plus continuous codes."""
        return sum(self.info_categorical) + self.info_continuous

    @property
    def num_ws(self) -> int:
        return 2 * len(self.widths)


@register("stylegan", StyleGANConfig)
class StyleGAN(GenerativeModel):
    """G = g o f and D of StyleGAN2; ``cgan`` and ``infogan`` are this family with a label or codes."""

    def __init__(self, config: StyleGANConfig):
        super().__init__(config)
        c = config
        self.mapping = MappingNetwork(c.z_dim + c.code_dim, c.w_dim, c.mapping_layers, c.mapping_lr_mul,
                                      c.num_classes if c.condition else 0)
        self.synthesis = Synthesis(c.image_size, c.widths, c.w_dim, c.in_channels, c.resample, c.fused)
        self.discriminator = Discriminator(c.image_size, c.d_widths, c.in_channels, c.resample, c.mbstd_group,
                                           c.num_classes if c.condition else 0, c.info_categorical, c.info_continuous)
        self.register_buffer("w_avg", torch.zeros(c.w_dim))
        self.register_buffer("pl_mean", torch.zeros(()))
        self.register_buffer("augment_p", torch.tensor(float(c.augment_p if c.augment != "none" else 0.0)))
        self.register_buffer("ada_signs", torch.zeros(2))  # sum of sign D(x_real), count, since the last update

    # --- the contract --------------------------------------------------------------------------
    def param_groups(self) -> dict:
        return {"G": [*self.mapping.parameters(), *self.synthesis.parameters()],
                "D": list(self.discriminator.parameters())}

    def ema_modules(self) -> list[str]:
        return ["mapping", "synthesis"]

    def phases(self) -> list[Phase]:
        c = self.config
        phases = [Phase("D", self.d_loss)]
        if c.r1_gamma > 0:
            phases.append(Phase("D", self.r1_loss, every=c.r1_every, lazy=True, name="r1"))
        phases.append(Phase("G", self.g_loss))
        if c.pl_weight > 0:
            phases.append(Phase("G", self.pl_loss, every=c.pl_every, lazy=True, name="pl"))
        return phases

    def latent_spaces(self) -> dict[str, tuple[int, ...]]:
        c = self.config
        return {"z": (c.z_dim + c.code_dim,), "w": (c.w_dim,), "w+": (c.num_ws, c.w_dim),
                "s": (sum(conv.affine.weight.shape[0] for conv in self.synthesis.style_layers()),)}

    # --- generation ----------------------------------------------------------------------------
    def draw_z(self, n: int, generator=None, device=None) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """(z with InfoGAN's codes appended, the categorical codes as indices, the continuous codes)."""
        c, device = self.config, device or self.w_avg.device
        z = torch.randn(n, c.z_dim, generator=generator).to(device)
        cats = [torch.randint(0, k, (n,), generator=generator).to(device) for k in c.info_categorical]
        cont = (torch.rand(n, c.info_continuous, generator=generator) * 2 - 1).to(device)
        onehot = [F.one_hot(i, k).float() for i, k in zip(cats, c.info_categorical)]
        return torch.cat([z, *onehot, cont], 1), cats, cont

    def map(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """w = f(z) (n x w_dim)."""
        return self.mapping(z, labels)

    def truncate(self, ws: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
        """w' = w_avg + psi (w - w_avg) on the first ``cutoff`` codes of W+ (Eqs. 2.18-2.19)."""
        if psi == 1:
            return ws
        out = ws.clone()
        k = ws.shape[1] if cutoff is None else cutoff
        out[:, :k] = self.w_avg.lerp(ws[:, :k], psi)
        return out

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """W -> W+: the same w at every style input."""
        return w[:, None].expand(-1, self.config.num_ws, -1)

    def styles(self, ws: torch.Tensor) -> torch.Tensor:
        """The StyleSpace code s (n x sum of style sizes) of W+ codes."""
        return torch.cat(self.synthesis.styles(ws), 1)

    def split_styles(self, s: torch.Tensor) -> list[torch.Tensor]:
        return list(s.split([conv.affine.weight.shape[0] for conv in self.synthesis.style_layers()], 1))

    def noise_maps(self, n: int, generator=None) -> list[torch.Tensor]:
        """One N(0, I) noise map per styled layer (pass to :meth:`synthesize` for fixed noise)."""
        return [torch.randn(n, 1, *hw, generator=generator).to(self.w_avg.device)
                for hw in self.synthesis.noise_shapes()]

    def synthesize(self, ws: torch.Tensor, noise=None) -> torch.Tensor:
        """g(W+ codes) -> images in [-1, 1] (unclamped); ``noise`` as :meth:`noise_maps`."""
        return self.synthesis(ws, noise)

    def from_styles(self, s: torch.Tensor, noise=None) -> torch.Tensor:
        """The images of StyleSpace codes."""
        return self.synthesis.from_styles(self.split_styles(s), noise)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """G(z) = g(f(z)) without truncation (the map of the ``z`` space)."""
        return self.synthesize(self.broadcast(self.map(z, labels)))

    @torch.no_grad()
    def sample(self, n: int, cond=None, generator=None, psi: float | None = None, noise=None) -> dict:
        """A sample dict: ``image`` from fresh z (and codes), truncated at psi (default: the
        config's), under ``cond`` for a conditional GAN (a class name or index, a list, or a tensor;
        default: a class per sample); ``label`` holds the labels used."""
        c = self.config
        z, _, _ = self.draw_z(n, generator)
        labels = self.labels_for(cond, n, generator)
        ws = self.truncate(self.broadcast(self.map(z, labels)), c.truncation_psi if psi is None else psi,
                           c.truncation_cutoff)
        out = {"image": self.synthesize(ws, noise if noise is not None else self.noise_maps(n, generator)).clamp(-1, 1)}
        return out if labels is None else {**out, "label": labels}

    def labels_for(self, cond, n: int, generator=None) -> torch.Tensor | None:
        """Labels of ``cond`` (see :func:`condition_labels`); a conditional GAN draws one per sample when None."""
        if self.config.condition and cond is None:
            return torch.randint(0, self.config.num_classes, (n,), generator=generator).to(self.w_avg.device)
        return condition_labels(self.config, cond, n, self.w_avg.device, self.model_name)

    # --- training ------------------------------------------------------------------------------
    def _labels(self, batch: dict) -> torch.Tensor | None:
        return batch_labels(self.config, batch)

    def _generate(self, n: int, labels, mixing: float = 0.0):
        """Training samples: (images, W+ codes, categorical codes, continuous codes); with
        probability ``mixing`` the codes after a random crossover come from a second z."""
        z, cats, cont = self.draw_z(n)
        ws = self.broadcast(self.map(z, labels))
        if mixing > 0 and torch.rand(()) < mixing:
            cut = int(torch.randint(1, self.config.num_ws, ()))
            z2, _, _ = self.draw_z(n)
            ws = torch.cat([ws[:, :cut], self.broadcast(self.map(z2, labels))[:, cut:]], 1)
        return self.synthesize(ws), ws, cats, cont

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return ada.augment(x, float(self.augment_p)) if self.config.augment != "none" else x

    def _track_w_avg(self, ws: torch.Tensor) -> None:
        with torch.no_grad():
            self.w_avg.lerp_(ws[:, 0].mean(0), 1 - self.config.w_avg_beta)

    def _info(self, h: torch.Tensor, cats, cont) -> torch.Tensor:
        logits, mean, log_std = self.discriminator.q(h)
        return info_nll(logits, mean, log_std, cats, cont)

    def d_loss(self, batch: dict, step: int = 0) -> dict:
        real, labels = images_of(batch), self._labels(batch)
        with torch.no_grad():
            fake, _, cats, cont = self._generate(len(real), labels)
        D = self.discriminator
        real_logits = D(self._augment(real), labels)
        h_fake = D.features(self._augment(fake))
        loss = d_logistic(real_logits, D.score(h_fake, labels))
        out = {"real_score": real_logits.mean().detach(), "fake_score": D.score(h_fake, labels).mean().detach()}
        if D.q_head is not None:
            nll = self._info(h_fake, cats, cont)
            loss = loss + self.config.info_weight * nll
            out["mutual_information"] = (code_entropy(self.config.info_categorical, self.config.info_continuous)
                                         - nll).detach()
        if self.config.augment == "ada":
            out["augment_p"] = self._ada_update(real_logits.detach(), step, len(real))
        return {"loss": loss, **out}

    def _ada_update(self, real_logits: torch.Tensor, step: int, n: int) -> torch.Tensor:
        """Accumulate sign D(x_real); every ``ada_interval`` steps move p by the ADA heuristic."""
        c = self.config
        with torch.no_grad():
            signs = torch.stack([real_logits.sign().sum(), torch.tensor(float(n), device=real_logits.device)])
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(signs)
            self.ada_signs += signs
            if (step + 1) % c.ada_interval == 0:
                r_t = float(self.ada_signs[0] / self.ada_signs[1])
                self.augment_p.fill_(ada.adjust_p(float(self.augment_p), r_t, c.ada_target,
                                                  int(self.ada_signs[1]), c.ada_kimg))
                self.ada_signs.zero_()
        return self.augment_p.clone()

    def r1_loss(self, batch: dict, step: int = 0) -> dict:
        real = images_of(batch).detach().requires_grad_(True)
        logits = self.discriminator(self._augment(real), self._labels(batch))
        penalty = r1_penalty(logits, real)
        return {"loss": self.config.r1_gamma / 2 * penalty, "r1": penalty.detach()}

    def g_loss(self, batch: dict, step: int = 0) -> dict:
        labels = self._labels(batch)
        fake, ws, cats, cont = self._generate(len(images_of(batch)), labels, self.config.style_mixing)
        self._track_w_avg(ws)
        h = self.discriminator.features(self._augment(fake))
        loss = g_nonsaturating(self.discriminator.score(h, labels))
        if self.discriminator.q_head is not None:
            loss = loss + self.config.info_weight * self._info(h, cats, cont)
        return {"loss": loss}

    def pl_loss(self, batch: dict, step: int = 0) -> dict:
        c = self.config
        n = max(1, len(images_of(batch)) // c.pl_batch_shrink)
        labels = self._labels(batch)
        z, _, _ = self.draw_z(n)
        ws = self.broadcast(self.map(z, None if labels is None else labels[:n]))  # the penalty reaches f too
        penalty, mean = path_length_penalty(self.synthesize(ws), ws, self.pl_mean, c.pl_decay)
        with torch.no_grad():
            self.pl_mean.copy_(mean)
        return {"loss": c.pl_weight * penalty, "pl_penalty": penalty.detach(), "pl_mean": mean.detach()}


@register("cgan", StyleGANConfig)
class ConditionalStyleGAN(StyleGAN):
    """Class-conditional StyleGAN2 (Zou Eq. 2.39 with D(G(z, y), y)): the label's embedding enters
    the mapping network, and the discriminator has a projection term. Needs ``model.condition``."""

    def __init__(self, config: StyleGANConfig):
        if not config.condition:
            raise ConfigError("a cgan needs model.condition, a categorical factor of the data (e.g. expression)")
        super().__init__(config)


@register("infogan", StyleGANConfig)
class InfoStyleGAN(StyleGAN):
    """InfoGAN on the StyleGAN2 networks (Chen et al. 2016; Zou Eqs. 2.34-2.35):
    min_G max_D V(D, G) - lambda I(c; G(z, c)), with I >= H(c) - E[-log Q(c | G(z, c))] and Q a
    head on the discriminator's trunk. Needs ``info_categorical`` or ``info_continuous``."""

    def __init__(self, config: StyleGANConfig):
        if not config.code_dim:
            raise ConfigError("an infogan needs model.info_categorical (e.g. [10]) or model.info_continuous (e.g. 2)")
        super().__init__(config)
