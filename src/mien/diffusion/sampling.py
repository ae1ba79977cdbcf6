"""The generalised DDPM/DDIM sampler and DDIM inversion (Haas Eq. 6.26, P-V Eqs. 2-5;
Pikoulis Eqs. 3.59-3.61, 4.18-4.19).

    x_{t-1} = sqrt(abar_{t-1}) P_t + D_t + sigma_t z,   P_t = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
    D_t = sqrt(1 - abar_{t-1} - sigma_t^2) eps,  sigma_t = eta sqrt((1 - abar_{t-1})/(1 - abar_t)) sqrt(1 - abar_t/abar_{t-1})

on any decreasing subsequence of timesteps (eta = 0: DDIM, eta = 1: DDPM with the posterior
variance). A ``denoise(x_t, t)`` callable returns the model output; guidance wraps it. Each step
returns a :class:`StepOutput` (x_{t-1} and the predicted x_0), as diffusers' schedulers do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from mien.diffusion.schedule import NoiseSchedule
from mien.errors import ConfigError

Denoise = Callable[[torch.Tensor, int], torch.Tensor]
Hook = Callable[..., torch.Tensor]


def timesteps(T: int, steps: int, spacing: str = "leading", t0: int | None = None) -> list[int]:
    """Decreasing timesteps of a sampler. ``leading``: k * (T // steps) (diffusers' default);
    ``linspace``: evenly over [0, T - 1]; with ``t0``: ``steps`` steps spread evenly over [0, t0]
    (Pikoulis §4.4: tau_1 = 1 < ... < tau_S = t0 in 1-based terms), for inversion and editing."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if t0 is not None:
        if not 0 <= t0 < T:
            raise ConfigError(f"t0 must lie in 0..{T - 1}, got {t0}")
        grid = torch.linspace(0, t0, steps).round().long()
    elif spacing == "leading":
        if steps > T:
            raise ConfigError(f"cannot take {steps} steps with {T} timesteps")
        grid = torch.arange(steps) * (T // steps)
    elif spacing == "linspace":
        grid = torch.linspace(0, T - 1, steps).round().long()
    else:
        raise ConfigError(f"unknown timestep spacing {spacing!r}; choose leading or linspace")
    return sorted(set(grid.tolist()), reverse=True)


@dataclass(frozen=True)
class StepOutput:
    """One reverse step, as diffusers' ``DDIMSchedulerOutput``: ``prev_sample`` is x_{t_prev},
    ``pred_original_sample`` the predicted x_0 it was computed from (clamped when ``clip_x0`` is set)."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def ddim_step(schedule: NoiseSchedule, eps: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor,
              eta: float = 0.0, noise: torch.Tensor | None = None, eps_direction: torch.Tensor | None = None,
              clip_x0: float | None = None) -> StepOutput:
    """One step of the generalised sampler from t to t_prev < t (-1: the clean data): Pikoulis
    Eq. 3.61, Haas Eq. 6.26 and P-V Eqs. 2-5, Song et al. (2021) Eqs. 12 and 16.

    Symbols:
        abar_t, abar_prev  alpha-bar at t and at t_prev (abar_{-1} = 1)
        eps                the model's noise prediction eps_theta(x_t, t)
        P_t                the predicted x_0 (f_theta of Pikoulis)
        sigma_t            the noise scale; eta = 0: DDIM, eta = 1: DDPM (sigma_t^2 = beta-tilde)
        D_t                the direction pointing to x_t
        z                  N(0, I) ``noise``, needed when eta > 0

    ``clip_x0`` clamps P_t to +-clip_x0 and re-derives eps from it (diffusers' ``clip_sample``
    with ``use_clipped_model_output``); ``eps_direction`` replaces eps in D_t only (Asyrrp, Haas
    P-V §3 and SM B)."""
    if eta > 0 and noise is None:
        raise ConfigError("a stochastic step (eta > 0) needs noise")
    a_t, a_prev = schedule.alpha_bar(t, x_t), schedule.alpha_bar(t_prev, x_t)
    # 1. predicted x_0: P_t = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)  (Song Eq. 12; Pikoulis Eq. 3.59; P-V Eq. 3)
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    # 2. sigma_t = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)  (Song Eq. 16; P-V Eq. 5)
    sigma = eta * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
    # 3. direction pointing to x_t: D_t = sqrt(1 - abar_prev - sigma_t^2) eps  (Song Eq. 12; P-V Eq. 4)
    direction = (1 - a_prev - sigma ** 2).clamp_min(0).sqrt() * (eps if eps_direction is None else eps_direction)
    # 4. x_{t-1} = sqrt(abar_prev) P_t + D_t + sigma_t z  (Song Eq. 12; Pikoulis Eq. 3.61; P-V Eq. 2)
    x_prev = a_prev.sqrt() * x0 + direction
    if eta > 0:
        x_prev = x_prev + sigma * noise
    return StepOutput(x_prev, x0)


def ddpm_step(schedule: NoiseSchedule, eps: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor,
              noise: torch.Tensor | None, variance: str = "posterior", clip_x0: float | None = None) -> StepOutput:
    """Ancestral step x_{t_prev} ~ N(mu_t, sigma_t^2 I) over the interval (t_prev, t], as diffusers'
    ``DDPMScheduler.step`` (Pikoulis §3.1, Eqs. 3.41 and 3.50; Haas Eq. 6.24; Ho et al. 2020 Eqs. 7 and 15).

    Symbols:
        abar_t, abar_prev  alpha-bar at t and at t_prev (abar_{-1} = 1)
        beta_t             1 - abar_t / abar_prev, the beta of the (possibly strided) interval
        x_0                the predicted clean sample (clamped to +-``clip_x0`` when set)
        mu_t               the mean of the posterior q(x_{t_prev} | x_t, x_0)
        sigma_t^2          beta-tilde_t (``variance='posterior'``) or beta_t (``'beta'``)
        z                  N(0, I) ``noise``; unused on the last step (t_prev = -1), which returns mu_t"""
    a_t, a_prev = schedule.alpha_bar(t, x_t), schedule.alpha_bar(t_prev, x_t)
    beta = 1 - a_t / a_prev
    # 1. predicted x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)  (Pikoulis Eq. 3.50; Ho Eq. 15)
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
    # 2. mu_t = sqrt(abar_prev) beta_t / (1 - abar_t) x_0 + sqrt(1 - beta_t) (1 - abar_prev) / (1 - abar_t) x_t
    #    (Pikoulis Eq. 3.41; Ho Eq. 7)
    mean = (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x_t
    if t_prev < 0:
        return StepOutput(mean, x0)
    # 3. sigma_t^2 = beta-tilde_t = beta_t (1 - abar_prev) / (1 - abar_t)  (Pikoulis Eq. 3.41), or beta_t (Zou Eq. 3.7)
    if variance == "posterior":
        var = (beta * (1 - a_prev) / (1 - a_t)).clamp_min(1e-20)
    elif variance == "beta":
        var = beta
    else:
        raise ConfigError(f"unknown DDPM variance {variance!r}; choose posterior or beta")
    # 4. x_{t-1} = mu_t + sigma_t z
    return StepOutput(mean + var.sqrt() * noise, x0)


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device if generator is None else generator.device,
                       dtype=like.dtype).to(like.device)


@torch.no_grad()
def sample(denoise: Denoise, schedule: NoiseSchedule, x_T: torch.Tensor, steps: list[int], eta: float = 0.0,
           method: str = "ddim", prediction: str = "epsilon", generator: torch.Generator | None = None,
           hook: Hook | None = None, harmonise: int = 1, variance: str = "posterior",
           clip_x0: float | None = None, direction: Denoise | None = None) -> torch.Tensor:
    """Run the reverse process over ``steps`` (decreasing) from x_T, without gradients: each step is
    :func:`ddim_step` (``method='ddim'``, any ``eta``) or :func:`ddpm_step` (``'ddpm'``, ``variance``).

    ``hook(x_prev, x_t=, t=, t_prev=, eps=, x0=)`` may rewrite each x_{t_prev} (inpainting,
    plug-and-play guidance); ``harmonise`` > 1 repeats every step but the last that many times,
    re-noising its result back to t in between (RePaint's resampling); ``direction`` is a second
    denoiser whose eps enters D_t only (Asyrrp, Haas P-V SM B: :meth:`HSpace.asyrrp`; DDIM only)."""
    if method not in ("ddim", "ddpm"):
        raise ConfigError(f"unknown sampler {method!r}; choose ddim or ddpm")
    if direction is not None and method != "ddim":
        raise ConfigError("a direction denoiser (Asyrrp) needs method='ddim'")

    def step(x_t: torch.Tensor, t: int, t_prev: int) -> torch.Tensor:
        eps, x0 = schedule.split(denoise(x_t, t), x_t, t, prediction)
        eps_d = None if direction is None else schedule.split(direction(x_t, t), x_t, t, prediction)[0]
        noise = _randn(x_t, generator) if (eta > 0 or method == "ddpm") else None
        if method == "ddim":
            x_prev = ddim_step(schedule, eps, t, t_prev, x_t, eta, noise, eps_d, clip_x0).prev_sample
        else:
            x_prev = ddpm_step(schedule, eps, t, t_prev, x_t, noise, variance, clip_x0).prev_sample
        return x_prev if hook is None else hook(x_prev, x_t=x_t, t=t, t_prev=t_prev, eps=eps, x0=x0)

    x = x_T
    for t, t_prev in zip(steps, [*steps[1:], -1]):
        x_prev = step(x, t, t_prev)
        for _ in range(harmonise - 1 if t_prev >= 0 else 0):
            x_prev = step(renoise(schedule, x_prev, t_prev, t, _randn(x, generator)), t, t_prev)
        x = x_prev
    return x


def renoise(schedule: NoiseSchedule, x_from: torch.Tensor, t_from: int, t_to: int, noise: torch.Tensor) -> torch.Tensor:
    """Sample q(x_{t_to} | x_{t_from}) for t_to > t_from: sqrt(abar_to/abar_from) x + sqrt(1 - abar_to/abar_from) z."""
    ratio = schedule.alpha_bar(t_to, x_from) / schedule.alpha_bar(t_from, x_from)
    return ratio.sqrt() * x_from + (1 - ratio).sqrt() * noise


@torch.no_grad()
def ddim_invert(denoise: Denoise, schedule: NoiseSchedule, x0: torch.Tensor, steps: list[int],
                prediction: str = "epsilon") -> torch.Tensor:
    """Deterministic DDIM inversion x_0 -> x_{steps[0]} (Pikoulis Eq. 4.18, Haas Eq. 6.30):
    x_{t+1} = sqrt(abar_{t+1}) P_t + sqrt(1 - abar_{t+1}) eps(x_t, t), with eps taken at the start
    of each interval (from the clean data, at the first timestep). ``steps`` is decreasing, as
    for sampling."""
    up = sorted(steps)
    x, t = x0, -1
    for t_next in up:
        eps, _ = schedule.split(denoise(x, max(t, 0)), x, max(t, 0), prediction)
        a_t, a_next = schedule.alpha_bar(t, x), schedule.alpha_bar(t_next, x)
        x = a_next.sqrt() * (x - (1 - a_t).sqrt() * eps) / a_t.sqrt() + (1 - a_next).sqrt() * eps
        t = t_next
    return x

