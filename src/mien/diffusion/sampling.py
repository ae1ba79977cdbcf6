"""The generalised DDPM/DDIM sampler, DDIM inversion and editing (Haas Eq. 6.26, P-V Eqs. 2-5;
Pikoulis Eqs. 3.59-3.61, 4.18-4.19).

    x_{t-1} = sqrt(abar_{t-1}) P_t + D_t + sigma_t z,   P_t = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
    D_t = sqrt(1 - abar_{t-1} - sigma_t^2) eps,  sigma_t = eta sqrt((1 - abar_{t-1})/(1 - abar_t)) sqrt(1 - abar_t/abar_{t-1})

on any decreasing subsequence of timesteps (eta = 0: DDIM, eta = 1: DDPM with the posterior
variance). A ``denoise(x_t, t)`` callable returns the model output; guidance wraps it.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint as grad_checkpoint

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


def ddim_step(schedule: NoiseSchedule, eps: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor,
              eta: float = 0.0, noise: torch.Tensor | None = None, eps_direction: torch.Tensor | None = None,
              clip_x0: float | None = None) -> torch.Tensor:
    """One step of the generalised sampler from t to t_prev (< t; -1 is the clean data).
    ``eps_direction`` lets D_t use another prediction than P_t (Asyrrp, Haas P-V SM B)."""
    a_t, a_prev = schedule.alpha_bar(t, x_t), schedule.alpha_bar(t_prev, x_t)
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()  # P_t
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    sigma = eta * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
    direction = (1 - a_prev - sigma ** 2).clamp_min(0).sqrt() * (eps if eps_direction is None else eps_direction)
    x_prev = a_prev.sqrt() * x0 + direction
    if eta > 0:
        if noise is None:
            raise ConfigError("a stochastic step (eta > 0) needs noise")
        x_prev = x_prev + sigma * noise
    return x_prev


def ddpm_step(schedule: NoiseSchedule, eps: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor,
              noise: torch.Tensor | None, variance: str = "posterior", clip_x0: float | None = None) -> torch.Tensor:
    """Ancestral step x_{t_prev} ~ N(mu, sigma^2 I): mu is the posterior mean given the predicted x0
    (Pikoulis Eq. 3.41), sigma^2 the posterior variance beta-tilde or beta (``variance='beta'``),
    both for the interval (t_prev, t]; no noise on the last step."""
    a_t, a_prev = schedule.alpha_bar(t, x_t), schedule.alpha_bar(t_prev, x_t)
    beta = 1 - a_t / a_prev  # the beta of the (possibly strided) interval
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
    mean = (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x_t
    if t_prev < 0:
        return mean
    if variance == "posterior":
        var = (beta * (1 - a_prev) / (1 - a_t)).clamp_min(1e-20)
    elif variance == "beta":
        var = beta
    else:
        raise ConfigError(f"unknown DDPM variance {variance!r}; choose posterior or beta")
    return mean + var.sqrt() * noise


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device if generator is None else generator.device,
                       dtype=like.dtype).to(like.device)


def sample(denoise: Denoise, schedule: NoiseSchedule, x_T: torch.Tensor, steps: list[int], eta: float = 0.0,
           method: str = "ddim", prediction: str = "epsilon", generator: torch.Generator | None = None,
           hook: Hook | None = None, harmonise: int = 1, variance: str = "posterior",
           clip_x0: float | None = None, differentiable: bool = False, checkpointing: bool = False) -> torch.Tensor:
    """Run the reverse process over ``steps`` (decreasing) from x_T.

    ``hook(x_prev, x_t=, t=, t_prev=, eps=, x0=)`` may rewrite each x_{t_prev} (inpainting,
    plug-and-play guidance); ``harmonise`` > 1 repeats each step that many times, re-noising the
    result back to t in between (RePaint's resampling); ``differentiable`` keeps the graph through
    all steps, ``checkpointing`` recomputes each denoiser call in the backward pass."""
    if method not in ("ddim", "ddpm"):
        raise ConfigError(f"unknown sampler {method!r}; choose ddim or ddpm")
    x = x_T
    context = torch.enable_grad() if differentiable else torch.no_grad()
    with context:
        for i, t in enumerate(steps):
            t_prev = steps[i + 1] if i + 1 < len(steps) else -1
            for r in range(max(1, harmonise)):
                if checkpointing and differentiable:
                    out = grad_checkpoint(denoise, x, t, use_reentrant=False)
                else:
                    out = denoise(x, t)
                eps, x0 = schedule.split(out, x, t, prediction)
                noise = _randn(x, generator) if (eta > 0 or method == "ddpm") else None
                if method == "ddim":
                    x_prev = ddim_step(schedule, eps, t, t_prev, x, eta, noise, clip_x0=clip_x0)
                else:
                    x_prev = ddpm_step(schedule, eps, t, t_prev, x, noise, variance, clip_x0)
                if hook is not None:
                    x_prev = hook(x_prev, x_t=x, t=t, t_prev=t_prev, eps=eps, x0=x0)
                if r + 1 < harmonise and t_prev >= 0:
                    x = renoise(schedule, x_prev, t_prev, t, _randn(x, generator))
            x = x_prev
    return x


def renoise(schedule: NoiseSchedule, x_from: torch.Tensor, t_from: int, t_to: int, noise: torch.Tensor) -> torch.Tensor:
    """Sample q(x_{t_to} | x_{t_from}) for t_to > t_from: sqrt(abar_to/abar_from) x + sqrt(1 - abar_to/abar_from) z."""
    ratio = schedule.alpha_bar(t_to, x_from) / schedule.alpha_bar(t_from, x_from)
    return ratio.sqrt() * x_from + (1 - ratio).sqrt() * noise


@torch.no_grad()
def ddim_invert(denoise: Denoise, schedule: NoiseSchedule, x0: torch.Tensor, steps: list[int],
                prediction: str = "epsilon", record: Callable | None = None) -> torch.Tensor:
    """Deterministic DDIM inversion x_0 -> x_{steps[0]} (Pikoulis Eq. 4.18, Haas Eq. 6.30):
    x_{t+1} = sqrt(abar_{t+1}) P_t + sqrt(1 - abar_{t+1}) eps(x_t, t), with eps taken at the start
    of each interval (from the clean data, at the first timestep). ``steps`` is decreasing, as
    for sampling; ``record(x_t, t)`` sees every intermediate latent."""
    up = sorted(steps)
    x, t = x0, -1
    for t_next in up:
        eps, _ = schedule.split(denoise(x, max(t, 0)), x, max(t, 0), prediction)
        a_t, a_next = schedule.alpha_bar(t, x), schedule.alpha_bar(t_next, x)
        x = a_next.sqrt() * (x - (1 - a_t).sqrt() * eps) / a_t.sqrt() + (1 - a_next).sqrt() * eps
        t = t_next
        if record is not None:
            record(x, t)
    return x


def edit(denoise_source: Denoise, denoise_target: Denoise, schedule: NoiseSchedule, x0: torch.Tensor, t0: int,
         steps: int, prediction: str = "epsilon", eta: float = 0.0, invert: str = "ddim",
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Edit x0: bring it to t0 (``invert='ddim'``: deterministic inversion under the source
    condition; ``'noise'``: sample q(x_t0 | x0), SDEdit) and regenerate under the target condition
    over the same ``steps`` timesteps spread on [0, t0] (Pikoulis §4.4, Alg. of system B)."""
    grid = timesteps(schedule.T, steps, t0=t0)
    if invert == "ddim":
        x_t0 = ddim_invert(denoise_source, schedule, x0, grid, prediction)
    elif invert == "noise":
        x_t0 = schedule.q_sample(x0, grid[0], _randn(x0, generator))
    else:
        raise ConfigError(f"unknown inversion {invert!r}; choose ddim or noise")
    return sample(denoise_target, schedule, x_t0, grid, eta=eta, prediction=prediction, generator=generator)
