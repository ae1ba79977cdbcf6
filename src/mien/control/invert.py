"""Inversion, image -> latent code, dispatched on the latent space, and the DDIM-inversion edit of
Pikoulis §4.4 (system P2)."""

from __future__ import annotations

import torch

from mien.control import gan_invert
from mien.control.direction import check_space
from mien.diffusion import sampling
from mien.errors import ConfigError


def _encode(model, x: torch.Tensor) -> torch.Tensor:
    """z = the encoder's output (the posterior mean for a Gaussian VAE)."""
    check_space(model, "z")
    return model.encode(x)


def _x_t0(model, x: torch.Tensor, source=None, t0: int = 500, steps: int = 40, method: str = "ddim",
          generator: torch.Generator | None = None) -> torch.Tensor:
    """x_t0 of a diffusion model: deterministic DDIM inversion under the ``source`` condition (plain
    conditional, gamma = 1) over ``steps`` steps spread on [0, t0] (Pikoulis Eq. 4.18, §4.4), or
    ``method='noise'``: a draw of q(x_t0 | x_0) (SDEdit)."""
    check_space(model, "x_t")
    z, grid = model.to_latent(x), sampling.timesteps(model.schedule.T, steps, t0=t0)
    if method == "ddim":
        denoise = model.denoiser(model.cond_labels(source, len(x)), 1.0)
        return sampling.ddim_invert(denoise, model.schedule, z, grid, model.config.prediction)
    if method == "noise":
        device = z.device if generator is None else generator.device
        noise = torch.randn(z.shape, generator=generator, device=device, dtype=z.dtype).to(z.device)
        return model.schedule.q_sample(z, grid[0], noise)
    raise ConfigError(f"unknown inversion {method!r}; choose ddim or noise")


def _gan(space: str):
    """Inversion into a StyleGAN's ``space`` (``w`` or ``w+``, Haas Eq. 2.20 and pSp/e4e,
    :mod:`mien.control.gan_invert`): options ``method`` (``optimise`` or ``encoder``),
    ``encoder`` (a trained GAN encoder: the codes of method ``encoder``, or the starting codes of
    ``optimise``, the hybrid of Haas P-I) and :func:`gan_invert.optimise`'s options; returns the codes."""

    def invert_gan(model, x: torch.Tensor, method: str = "optimise", encoder=None, **options) -> torch.Tensor:
        if method == "encoder":
            if encoder is None:
                raise ConfigError("method encoder needs a trained GAN encoder (encoder=...)")
            return gan_invert.encode(encoder, x, space, **options).codes
        if method != "optimise":
            raise ConfigError(f"unknown GAN inversion method {method!r}; choose optimise or encoder")
        if encoder is not None:
            options["start"] = gan_invert.encode(encoder, x, space).codes
        return gan_invert.optimise(model, x, space, **options).codes

    return invert_gan


INVERSIONS = {"z": _encode, "x_t0": _x_t0, "w": _gan("w"), "w+": _gan("w+")}


@torch.no_grad()
def invert(model, x: torch.Tensor, space: str, **options) -> torch.Tensor:
    """The code of images ``x`` in ``space``: ``z`` (VAE family, :func:`_encode`), ``x_t0``
    (diffusion, options source, t0, steps, method, generator: :func:`_x_t0`), or a StyleGAN's
    ``w`` / ``w+`` (options method, encoder and those of :func:`gan_invert.optimise`: :func:`_gan`)."""
    if space not in INVERSIONS:
        raise ConfigError(f"unknown inversion space {space!r}; choose one of {', '.join(INVERSIONS)}")
    return INVERSIONS[space](model, x, **options)


@torch.no_grad()
def edit(model, x: torch.Tensor, source, target, t0: int = 500, steps: int = 40, guidance: float = 4.0,
         method: str = "ddim", generator: torch.Generator | None = None) -> torch.Tensor:
    """Emotion editing (Pikoulis §4.4, system P2): invert ``x`` under the source label to t0, then
    regenerate under the target label with classifier-free guidance over the same timesteps;
    ``method='noise'`` replaces the inversion by SDEdit's q(x_t0 | x_0)."""
    if not getattr(model.config, "condition", None):
        raise ConfigError(f"{model.model_name} cannot edit; use a conditional diffusion checkpoint")
    x_t0 = invert(model, x, "x_t0", source=source, t0=t0, steps=steps, method=method, generator=generator)
    grid = sampling.timesteps(model.schedule.T, steps, t0=t0)
    denoise = model.denoiser(model.cond_labels(target, len(x)), guidance)
    out = sampling.sample(denoise, model.schedule, x_t0, grid, prediction=model.config.prediction, generator=generator)
    return model.from_latent(out)
