"""The 4D facial expression diffusion model (Zou thesis ch. 3, system Z1): an unconditional DDPM
over absolute landmark sequences x0 = {L_1..L_F} (§3.4.1), plus the networks that steer it at
sampling time only (§3.4.2): a type-I and a type-S classifier of noisy sequences and a text head
with its text encoder.

One training run fits all of them through the engine's parameter groups: ``model`` (the noise
approximator, Eq. 3.8), ``classifier`` (cross-entropy on x_t, t ~ U{0..T} with t = 0 the clean
data) and ``text`` (the head and the text encoder, contrastively). Coordinates are standardised
by a per-coordinate mean and one scale taken from the first training batch (digest A.3).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mien.data.world.sequences import DIRECTIONS, SEQUENCE_CLASSES
from mien.diffusion.schedule import NoiseSchedule
from mien.errors import ConfigError
from mien.models.base import ModelConfig, Phase, register
from mien.models.expr4d.backbones import BACKBONES, make_network
from mien.models.expr4d.base import SequenceModel
from mien.models.expr4d.sampling import label_control, unconditional
from mien.models.expr4d.text import TextEncoder, world_vocabulary


@dataclass
class Expr4DConfig(ModelConfig):
    name: str = "expr4d"
    landmarks: int = 68
    backbone: str = "bit"  # bit | causal | unet (Tab. 3.6), for the denoiser and the guidance heads
    d_model: int = 512
    layers: int = 8
    heads: int = 8
    ff: int = 2048
    dropout: float = 0.1
    unet_widths: list[int] = field(default_factory=lambda: [256, 512, 512])
    head_layers: int = 4
    timesteps: int = 2000
    schedule: str = "linear"
    beta_start: float | None = None
    beta_end: float | None = None
    sample_steps: int = 0  # 0: all T steps of ancestral sampling, as in the thesis
    clip_x0: float | None = None  # clamp each step's predicted x0 (standardised units); None: as the thesis
    class_names: list[str] = field(default_factory=lambda: list(SEQUENCE_CLASSES))
    directions: list[str] = field(default_factory=lambda: list(DIRECTIONS))
    text_dim: int = 512
    text_width: int = 128
    text_layers: int = 2
    vocab: list[str] = field(default_factory=list)
    temperature: float = 0.07
    guidance_lambda: float = 0.01  # lambda of Alg. 1 (§3.5)
    guidance_steps: int = 3  # Adagrad steps per reverse step
    guidance_lr: float = 0.05  # Adagrad step size (unspecified in the thesis)
    passes: int = 5  # harmonisation passes of Alg. 4

    # options read only at sampling time: a trained model can take new values (`Expr4D.with_sampling`)
    SAMPLING = ("sample_steps", "clip_x0", "guidance_lambda", "guidance_steps", "guidance_lr", "passes")

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ConfigError(f"model.backbone {self.backbone!r} is unknown; choose one of {', '.join(BACKBONES)}")
        if self.landmarks < 1 or len(self.class_names) < 2 or len(self.directions) != 2:
            raise ConfigError("model.landmarks must be >= 1, model.class_names needs >= 2 names and "
                              "model.directions exactly two (N2E, E2N)")
        if self.clip_x0 is not None and not self.clip_x0 > 0:
            raise ConfigError(f"model.clip_x0 must be a positive number of standard units or null, got {self.clip_x0}")
        width = self.unet_widths[0] if self.backbone == "unet" else self.d_model
        if width < 3 * self.landmarks:
            warnings.warn(f"the {self.backbone} denoiser is {width} wide, less than the {3 * self.landmarks} coordinates "
                          f"of a frame: eps cannot be predicted at high noise (MSE >= 1 - {width}/{3 * self.landmarks}) "
                          f"and samples diverge; use a width of at least {3 * self.landmarks} for anything but tests",
                          stacklevel=2)


@register("expr4d", Expr4DConfig)
class Expr4D(SequenceModel):
    """eps_theta(x_t, t) with Eq. 3.8; p_phi(y | x_t, t) of type I (expression) and type S
    (expression x direction, index 2 y + d); BiT(x_t, t) against the text encoder."""

    def __init__(self, config: Expr4DConfig):
        super().__init__(config)
        c = config
        if not c.vocab:
            c.vocab = world_vocabulary()
        self.schedule = NoiseSchedule.make(c.schedule, c.timesteps, c.beta_start, c.beta_end)
        d = 3 * c.landmarks
        size = dict(d_model=c.d_model, heads=c.heads, ff=c.ff, dropout=c.dropout, unet_widths=c.unet_widths)
        self.denoiser = make_network(c.backbone, d, d, layers=c.layers, **size)
        n = len(c.class_names)
        self.classifier_I = make_network(c.backbone, d, n, layers=c.head_layers, pooled=True, **size)
        self.classifier_S = make_network(c.backbone, d, 2 * n, layers=c.head_layers, pooled=True, **size)
        self.text_head = make_network(c.backbone, d, c.text_dim, layers=c.head_layers, pooled=True, **size)
        self.text_encoder = TextEncoder(c.vocab, c.text_width, c.text_layers, c.text_dim)

    def param_groups(self):
        groups = {"model": list(self.denoiser.parameters()),
                  "classifier": [*self.classifier_I.parameters(), *self.classifier_S.parameters()],
                  "text": [*self.text_head.parameters(), *self.text_encoder.parameters()]}
        return {k: [p for p in v if p.requires_grad] for k, v in groups.items()}

    # --- networks --------------------------------------------------------------------------------
    def eps(self, x: torch.Tensor, t, mask: torch.Tensor | None = None) -> torch.Tensor:
        """eps_theta(x_t, t) for standardised x_t (B x F x 3N) and a 0-based timestep."""
        return self.denoiser(x, torch.as_tensor(t, device=x.device).expand(len(x)), mask)

    def class_logits(self, x: torch.Tensor, t, kind: str = "I", mask: torch.Tensor | None = None) -> torch.Tensor:
        """log-odds of p_phi(y | x_t, t): ``kind`` I (expression) or S (2 y + direction)."""
        net = {"I": self.classifier_I, "S": self.classifier_S}[kind]
        return net(x, torch.as_tensor(t, device=x.device).expand(len(x)), mask)

    def sequence_embedding(self, x: torch.Tensor, t, mask: torch.Tensor | None = None) -> torch.Tensor:
        """BiT(x_t, t) of Eq. 3.10, as unit vectors."""
        return F.normalize(self.text_head(x, torch.as_tensor(t, device=x.device).expand(len(x)), mask), dim=-1)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        return self.text_encoder(texts)

    # --- training --------------------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        """Three phases on three groups: the noise approximator (Eq. 3.8), the guidance classifiers
        of type I and S, and the BiT/text-encoder alignment (digest A.4)."""
        return [Phase("model", self.loss), Phase("classifier", self.classifier_loss), Phase("text", self.alignment_loss)]

    def loss(self, batch: dict, step: int = 0) -> dict:
        """Eq. 3.8, E ||eps - eps_theta(x_t, t)||^2 averaged over real frames."""
        seq, mask = self.observe(batch)
        x0 = self.normalise(seq)
        weight = mask[..., None].float().expand_as(x0)
        t = torch.randint(self.schedule.T, (len(x0),), device=x0.device)
        noise = torch.randn_like(x0)
        err = (self.eps(self.schedule.q_sample(x0, t, noise), t, mask) - noise).pow(2)
        return {"loss": (err * weight).sum() / weight.sum()}

    def _noisy_heads_input(self, batch: dict):
        """x_t of the batch with t ~ U{-1..T-1} for the guidance heads (0-based; -1: clean data)."""
        seq, mask = self.observe(batch)
        x0 = self.normalise(seq)
        t = torch.randint(-1, self.schedule.T, (len(x0),), device=x0.device)
        return self.schedule.q_sample(x0, t, torch.randn_like(x0)), t, mask

    def classifier_loss(self, batch: dict, step: int = 0) -> dict:
        """CE of p_phi(y | x_t, t) of type I (expression) plus type S (2 y + direction)."""
        x_h, t_h, mask = self._noisy_heads_input(batch)
        y = torch.as_tensor(batch["label"], device=x_h.device).long()
        direction = torch.as_tensor(batch["factors"]["direction"], device=x_h.device).long()
        logits_I = self.class_logits(x_h, t_h, "I", mask)
        logits_S = self.class_logits(x_h, t_h, "S", mask)
        loss = F.cross_entropy(logits_I, y) + F.cross_entropy(logits_S, 2 * y + direction)
        return {"loss": loss, "classifier_acc": (logits_I.argmax(1) == y).float().mean().detach()}

    def alignment_loss(self, batch: dict, step: int = 0) -> dict:
        x_h, t_h, mask = self._noisy_heads_input(batch)
        text, cos = self.text_loss(x_h, t_h, mask, list(batch["text"]))
        return {"loss": text, "text_cos": cos.detach()}

    def text_loss(self, x_t, t, mask, texts: list[str]):
        """CLIP-style cross-entropy of each sequence against the distinct texts of the batch (the
        text encoder learns alongside, so 1 - cos alone would collapse), plus MotionCLIP's
        1 - cos(BiT(x_t, t), text) (digest A.4)."""
        unique = sorted(set(texts))
        target = torch.tensor([unique.index(s) for s in texts], device=x_t.device)
        e_seq, e_txt = self.sequence_embedding(x_t, t, mask), self.embed_text(unique)
        sim = e_seq @ e_txt.T
        cos = sim.gather(1, target[:, None]).squeeze(1)
        return F.cross_entropy(sim / self.config.temperature, target) + (1 - cos).mean(), cos.mean()

    # --- sampling -------------------------------------------------------------------------------
    def with_sampling(self, **options) -> "Expr4D":
        """This model with new sampling-time options (``Expr4DConfig.SAMPLING``, checked as at
        construction); the networks are shared, so no retraining is needed."""
        unknown = sorted(set(options) - set(Expr4DConfig.SAMPLING))
        if unknown:
            raise ConfigError(f"{', '.join(unknown)} cannot change after training; sampling options are "
                              f"{', '.join(Expr4DConfig.SAMPLING)}")
        with warnings.catch_warnings():  # the width warning was given when the model was built
            warnings.filterwarnings("ignore", message="the .* denoiser is")
            self.config = dataclasses.replace(self.config, **options)
        return self

    @torch.no_grad()
    def sample(self, n: int, cond=None, generator=None, frames: int = 40) -> dict:
        """A sample dict: ``sequence``, n sequences (n x F x N x 3), unconditional, or under label
        control (Alg. 1) for ``cond``."""
        if cond is None:
            return {"sequence": unconditional(self, n, frames, generator)}
        return {"sequence": label_control(self, cond, n, frames, generator=generator)}
