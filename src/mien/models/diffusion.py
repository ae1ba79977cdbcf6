"""Diffusion models in pixel space or in the latent space of a mien autoencoder (latent diffusion,
Pikoulis §3.4 and §4.2-4.3, system P1), unconditional or class-conditional with classifier-free
guidance training (a learned null label replaces the condition with probability p_uncond)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mien.diffusion import sampling
from mien.diffusion.denoisers import DenoiserConfig, UNetDenoiser
from mien.diffusion.guidance import classifier_free
from mien.diffusion.schedule import PREDICTIONS, NoiseSchedule
from mien.errors import ConfigError
from mien.models.base import ConditionalConfig, GenerativeModel, build_model, batch_labels, class_index, condition_labels, images_of, register


@dataclass
class DiffusionConfig(ConditionalConfig):
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    schedule: str = "linear"
    timesteps: int = 1000
    beta_start: float | None = None
    beta_end: float | None = None
    prediction: str = "epsilon"
    p_uncond: float = 0.1
    uncond_per_batch: bool = False
    autoencoder: str | None = None
    autoencoder_config: dict = field(default_factory=dict)
    latent_scale: float = 0.0
    sample_steps: int = 50
    eta: float = 0.0
    guidance: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"model.prediction {self.prediction!r} is unknown; choose one of {', '.join(PREDICTIONS)}")
        if not 0 <= self.p_uncond <= 1:
            raise ConfigError(f"model.p_uncond must lie in [0, 1], got {self.p_uncond}")


@register("diffusion", DiffusionConfig)
class Diffusion(GenerativeModel):
    """eps-, x0- or v-prediction DDPM trained with the simple loss E||target - net(x_t, t, y)||^2
    (Pikoulis Eqs. 3.80, 3.83); sampled with the generalised DDIM/DDPM sampler and CFG."""

    def __init__(self, config: DiffusionConfig):
        super().__init__(config)
        c = config
        self.schedule = NoiseSchedule.make(c.schedule, c.timesteps, c.beta_start, c.beta_end)
        self.autoencoder = self._autoencoder()
        if self.autoencoder is not None:
            channels, size, _ = self.autoencoder.latent_shape
        else:
            channels, size = c.in_channels, c.image_size
        self.latent_shape = (channels, size, size)
        self.net = UNetDenoiser(c.denoiser, size, channels, c.num_classes if c.condition else 0)
        self.register_buffer("scale", torch.tensor(float(c.latent_scale or (1.0 if self.autoencoder is None else 0.0))))

    def _autoencoder(self):
        """The frozen first stage: built from ``autoencoder_config`` (weights then come with this
        model's checkpoint), or loaded from the ``autoencoder`` checkpoint folder the first time."""
        c = self.config
        if not c.autoencoder and not c.autoencoder_config:
            return None
        if c.autoencoder_config:
            ae = build_model(c.autoencoder_config)
        else:
            from mien.models.checkpoint import load

            ae = load(c.autoencoder)
            c.autoencoder_config = ae.config_dict()
        if not hasattr(ae, "encode_latent"):
            raise ConfigError(f"{ae.model_name} has a vector latent; latent diffusion needs a spatial one (vqvae, klae)")
        if ae.config.image_size != c.image_size:
            raise ConfigError(f"the autoencoder works on {ae.config.image_size} px images, the model on {c.image_size}")
        return ae.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.autoencoder is not None:
            self.autoencoder.eval()
        return self

    # --- latents -------------------------------------------------------------------------------
    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> scaled diffusion space (the first stage's latents x scale)."""
        if self.autoencoder is None:
            return x
        if float(self.scale) == 0.0:
            raise ConfigError("the latent scale is not fitted yet; train the model (the engine calls fit_data) "
                              "or set model.latent_scale")
        with torch.no_grad():
            z = self.autoencoder.encode_latent(x)
        return z * self.scale

    @torch.no_grad()
    def fit_data(self, batch: dict) -> dict:
        """Latent diffusion: scale = 1 / std of the first stage's latents of ``batch``, so that the
        diffusion runs on unit-variance latents (Rombach et al. 2022, Sec. 4.3.2)."""
        if self.autoencoder is None or float(self.scale) != 0.0:
            return {}
        z = self.autoencoder.encode_latent(images_of(batch))
        self.scale.fill_(1.0 / z.std().clamp_min(1e-6).item())
        return {"latent_scale": float(self.scale)}

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        if self.autoencoder is None:
            return z.clamp(-1, 1)
        return self.autoencoder.decode_latent(z / self.scale).clamp(-1, 1)

    # --- conditions ----------------------------------------------------------------------------
    def labels(self, batch: dict) -> torch.Tensor | None:
        return batch_labels(self.config, batch)

    def label_index(self, label) -> int:
        """A class given by name (from class_names) or index."""
        return class_index(label, self.config.class_names, self.config.num_classes)

    def _drop(self, y: torch.Tensor) -> torch.Tensor:
        """Replace labels by the null label with probability p_uncond (per sample or per batch)."""
        c = self.config
        if c.uncond_per_batch:
            drop = (torch.rand((), device=y.device) < c.p_uncond).expand_as(y)
        else:
            drop = torch.rand(y.shape, device=y.device) < c.p_uncond
        return torch.where(drop, torch.full_like(y, c.num_classes), y)

    # --- training ------------------------------------------------------------------------------
    def loss(self, batch: dict, step: int = 0) -> dict:
        z = self.to_latent(images_of(batch))
        y = self.labels(batch)
        t = torch.randint(self.schedule.T, (len(z),), device=z.device)
        noise = torch.randn_like(z)
        x_t = self.schedule.q_sample(z, t, noise)
        out = self.net(x_t, t, self._drop(y) if y is not None else None)
        loss = F.mse_loss(out, self.schedule.target(z, t, noise, self.config.prediction))
        return {"loss": loss}

    # --- sampling ------------------------------------------------------------------------------
    def latent_spaces(self) -> dict[str, tuple[int, ...]]:
        """x_t (the noisy latents, x_T included) and h, the U-Net bottleneck (mid-block output, Haas
        P-V §3), which ``mien.control`` edits; DDIM inversion (``mien.control.invert``) reaches x_t0."""
        channels = self.config.denoiser.resolved().channels
        size = self.latent_shape[1] // 2 ** (len(channels) - 1)
        return {"x_t": self.latent_shape, "h": (channels[-1], size, size)}

    def denoiser(self, cond: torch.Tensor | None, guidance: float):
        """``denoise(x, t)`` for the sampler, with classifier-free guidance when conditional."""
        if cond is None or not self.config.condition:
            return lambda x, t: self.net(x, t, None)
        return classifier_free(self.net, cond, self.net.null(len(cond), cond.device), guidance)

    def cond_labels(self, cond, n: int) -> torch.Tensor | None:
        """Label indices for n samples from a class name or index, a list of them, or a tensor."""
        return condition_labels(self.config, cond, n, self.scale.device, "this diffusion model")

    @torch.no_grad()
    def sample(self, n: int, cond=None, generator=None, guidance: float | None = None, steps: int | None = None,
               eta: float | None = None, method: str = "ddim") -> dict:
        """A sample dict: ``image`` generated under ``cond`` (a class name or index, or a list) with
        the model's sampler, or the given ``guidance``, ``steps``, ``eta`` and ``method``."""
        c = self.config
        y = self.cond_labels(cond, n)
        x_T = torch.randn((n, *self.latent_shape), generator=generator).to(self.scale.device)
        grid = sampling.timesteps(self.schedule.T, steps or c.sample_steps)
        z = sampling.sample(self.denoiser(y, c.guidance if guidance is None else guidance), self.schedule, x_T, grid,
                            eta=c.eta if eta is None else eta, method=method, prediction=c.prediction,
                            generator=generator)
        return {"image": self.from_latent(z)}

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Through the first stage only (identity in pixel space)."""
        return self.from_latent(self.to_latent(x))
