"""KL-regularised convolutional autoencoder with a spatial latent: the "KL-reg" first stage of
latent diffusion (Pikoulis §3.4; Rombach et al. 2022): a Gaussian q(z|x) per latent position
with a slight KL to N(0, I), so that the latent map is smooth enough to diffuse in."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mien.errors import ConfigError
from mien.evaluator.perceptual import lpips_distance
from mien.models.base import GenerativeModel, ImageConfig, images_of, register
from mien.nn.conv import ConvDecoder, ConvEncoder, check_geometry


@dataclass
class KLAEConfig(ImageConfig):
    latent_channels: int = 4
    kl_weight: float = 1e-4
    perceptual_weight: float = 0.0  # lpips_mien on the frozen shipped evaluator

    def __post_init__(self):
        if self.latent_channels < 1 or self.kl_weight < 0 or self.perceptual_weight < 0:
            raise ConfigError("model.latent_channels must be >= 1, model.kl_weight and model.perceptual_weight >= 0")


@register("klae", KLAEConfig)
class KLAutoencoder(GenerativeModel):
    """loss = mean (x - D(z))^2 + kl_weight * KL(q(z|x) || N(0, I)) / number of latent values
    [+ perceptual_weight * lpips_mien(D(z), x)], z = mu + sigma * eps (reparameterisation,
    lecture 002)."""

    def __init__(self, config: KLAEConfig):
        super().__init__(config)
        c = config
        self.m = check_geometry(c.image_size, c.widths)
        self.encoder = nn.Sequential(ConvEncoder(c.in_channels, c.widths, c.blocks),
                                     nn.Conv2d(c.widths[-1], 2 * c.latent_channels, 1))
        self.decoder = nn.Sequential(nn.Conv2d(c.latent_channels, c.widths[-1], 1),
                                     ConvDecoder(c.in_channels, c.widths, c.blocks))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.config.latent_channels, self.m, self.m)

    @property
    def latent_dim(self) -> int:
        c, m, _ = self.latent_shape
        return c * m * m

    def posterior(self, x: torch.Tensor):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    encode_latent, decode_latent = encode, decode

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def sample(self, n: int, cond=None, generator=None) -> dict:
        """A sample dict: ``image`` decoded from z ~ N(0, I) (a weak prior: latent diffusion is the
        real one)."""
        if cond is not None:
            raise ConfigError("klae is unconditional; sample it without a condition")
        z = torch.randn((n, *self.latent_shape), generator=generator)
        return {"image": self.decode(z.to(next(self.parameters()).device))}

    def loss(self, batch: dict, step: int = 0) -> dict:
        x = images_of(batch)
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        x_hat = self.decoder(z)
        rec = F.mse_loss(x_hat, x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).mean()
        out = {"loss": rec + self.config.kl_weight * kl, "mse": rec.detach(), "kl": kl.detach()}
        if self.config.perceptual_weight > 0:
            perceptual = lpips_distance(self._frozen_evaluator(x), x_hat, x).mean()
            out["loss"] = out["loss"] + self.config.perceptual_weight * perceptual
            out["perceptual"] = perceptual.detach()
        return out

    def _frozen_evaluator(self, x: torch.Tensor):
        """The shipped evaluator of this image size, frozen and kept out of the state dict: the
        perceptual term of the latent-diffusion first stage (Rombach et al. 2022 §3, "perceptual
        loss"; Pikoulis §3.4), with mien's evaluator in place of the pretrained VGG of LPIPS."""
        from mien.evaluator import evaluator_for

        ev = evaluator_for(self.config.image_size).to(x.device)
        return ev.requires_grad_(False)
