"""Noise schedules and the quantities derived from them (Pikoulis §3.1, Haas Eqs. 6.13-6.22).

Timesteps are 0-based as in diffusers: index t = 0..T-1 holds beta_{t+1} of the thesis, and
``abar(-1) = 1`` is the clean data. alpha_t = 1 - beta_t, abar_t = prod_{s <= t} alpha_s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mien.errors import ConfigError

KINDS = ("linear", "scaled_linear", "cosine")
PREDICTIONS = ("epsilon", "sample", "v_prediction")


def make_betas(kind: str, T: int, beta_start: float | None = None, beta_end: float | None = None) -> torch.Tensor:
    """linear: beta from 1e-4 to 0.02 (DDPM); scaled_linear: beta from 0.0015 to 0.0205, linear in
    sqrt(beta) (the latent-diffusion convention, Pikoulis §4.3.3 defaults); cosine: abar_t = f(t)/f(0),
    f(t) = cos^2((t/T + s)/(1 + s) pi/2), s = 0.008, betas clipped at 0.999 (Haas Eq. 6.22)."""
    if T < 2:
        raise ConfigError(f"a schedule needs at least 2 timesteps, got {T}")
    if kind == "linear":
        return torch.linspace(beta_start or 1e-4, beta_end or 0.02, T, dtype=torch.float64)
    if kind == "scaled_linear":
        lo, hi = beta_start or 0.0015, beta_end or 0.0205
        return torch.linspace(lo ** 0.5, hi ** 0.5, T, dtype=torch.float64) ** 2
    if kind == "cosine":
        s = 0.008
        f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        return torch.tensor([min(1 - f(t + 1) / f(t), 0.999) for t in range(T)], dtype=torch.float64)
    raise ConfigError(f"unknown noise schedule {kind!r}; choose one of {', '.join(KINDS)}")


@dataclass
class NoiseSchedule:
    """All derived quantities, stored in float64 and handed out in the caller's dtype."""

    betas: torch.Tensor

    def __post_init__(self):
        b = self.betas.double()
        self.T = len(b)
        self.alphas = 1 - b
        self.abar = torch.cumprod(self.alphas, 0)
        self.abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.abar[:-1]])
        self.sqrt_abar = self.abar.sqrt()
        self.sqrt_one_minus_abar = (1 - self.abar).sqrt()
        self.sqrt_recip_abar_minus_one = (1 / self.abar - 1).sqrt()  # p_t of Pikoulis Eq. 4.15
        self.posterior_variance = b * (1 - self.abar_prev) / (1 - self.abar)  # beta-tilde, Eq. 3.41
        self.posterior_mean_coef1 = b * self.abar_prev.sqrt() / (1 - self.abar)  # multiplies x0
        self.posterior_mean_coef2 = (1 - self.abar_prev) * self.alphas.sqrt() / (1 - self.abar)  # x_t

    @classmethod
    def make(cls, kind: str = "linear", T: int = 1000, beta_start: float | None = None,
             beta_end: float | None = None) -> "NoiseSchedule":
        return cls(make_betas(kind, T, beta_start, beta_end))

    def alpha_bar(self, t, like: torch.Tensor | None = None) -> torch.Tensor:
        """abar_t for an int or a tensor of timesteps, with abar_{-1} = 1; shaped to broadcast
        against ``like`` (B x ...) when given."""
        t = torch.as_tensor(t)
        a = torch.where(t >= 0, self.abar[t.clamp(min=0).cpu()], torch.ones((), dtype=torch.float64))
        if like is None:
            return a
        a = a.to(like.device, like.dtype)
        return a.reshape(*a.shape, *([1] * (like.dim() - a.dim())))

    def q_sample(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Pikoulis Eq. 3.31)."""
        a = self.alpha_bar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def velocity(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (the v-prediction target)."""
        a = self.alpha_bar(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def split(self, output: torch.Tensor, x_t: torch.Tensor, t, prediction: str = "epsilon"):
        """(eps, x0) from a model output of the given parameterisation (Pikoulis Eq. 3.50)."""
        a = self.alpha_bar(t, x_t)
        if prediction == "epsilon":
            return output, (x_t - (1 - a).sqrt() * output) / a.sqrt()
        if prediction == "sample":
            return (x_t - a.sqrt() * output) / (1 - a).sqrt(), output
        if prediction == "v_prediction":
            return (1 - a).sqrt() * x_t + a.sqrt() * output, a.sqrt() * x_t - (1 - a).sqrt() * output
        raise ConfigError(f"unknown prediction type {prediction!r}; choose one of {', '.join(PREDICTIONS)}")

    def target(self, x0: torch.Tensor, t, noise: torch.Tensor, prediction: str = "epsilon") -> torch.Tensor:
        """The regression target of each parameterisation."""
        if prediction == "epsilon":
            return noise
        if prediction == "sample":
            return x0
        if prediction == "v_prediction":
            return self.velocity(x0, t, noise)
        raise ConfigError(f"unknown prediction type {prediction!r}; choose one of {', '.join(PREDICTIONS)}")
