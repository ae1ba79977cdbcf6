"""Plug-and-play guidance of an unconditional DDPM (Zou thesis §3.4.2, §3.9.4, after Diffusion-LM):
the reverse step R(x_t, t) with a per-step hook, its refinement by Adagrad toward a score, and the
score of a noisy-input classifier.

R(x_t, t): x^_{t-1} = mu_theta(x_t, t) + sigma_t z with sigma_t^2 = beta_t (Eq. 3.7, §3.5), the
ancestral DDPM step with ``variance='beta'``. Timesteps are 0-based: the thesis's t - 1 is
``t_prev`` here and -1 is the clean data. ``model`` is any denoiser exposing ``eps(x, t)``,
``schedule`` and ``config.sample_steps``/``config.clip_x0`` (the expr4d DDPM).
"""

from __future__ import annotations

from typing import Callable

import torch

from mien.diffusion import sampling


def reverse(model, x_T: torch.Tensor, hook: Callable | None = None, generator=None, start: int | None = None):
    """Ancestral sampling from x_start (default x_T) to x_0 over ``model.config.sample_steps``
    timesteps (0: every timestep, as in the thesis), the predicted x0 clamped to
    +-``model.config.clip_x0`` where set (DDPM practice: a small systematic error in eps, such as
    under-predicting its frame-constant part, otherwise compounds over the reverse steps)."""
    T = model.schedule.T
    start = T - 1 if start is None else start
    steps = min(model.config.sample_steps or T, start + 1)
    grid = sampling.timesteps(T, steps, t0=start)
    return sampling.sample(lambda x, t: model.eps(x, t), model.schedule, x_T, grid, method="ddpm",
                           variance="beta", hook=hook, generator=generator, clip_x0=model.config.clip_x0)


def refine(model, score: Callable, lam: float | None = None, steps: int | None = None, lr: float | None = None):
    """Hook for line 10 of Alg. 1: x_{t-1} = argmax_x [lambda log p_theta(x | x_t) + score(x, t-1)],
    log p_theta(x | x_t) = -||x - mu_theta(x_t, t)||^2 / (2 sigma_t^2), by Adagrad steps started at
    x^_{t-1} (after Diffusion-LM). ``score(x, t)`` returns one value per sequence."""
    c = model.config
    lam = c.guidance_lambda if lam is None else lam
    steps = c.guidance_steps if steps is None else steps
    lr = c.guidance_lr if lr is None else lr

    def hook(x_prev, *, x_t, t, t_prev, eps, **_):
        mu = sampling.ddpm_step(model.schedule, eps, t, t_prev, x_t, None if t_prev < 0 else torch.zeros_like(x_t),
                                variance="beta", clip_x0=c.clip_x0).prev_sample
        var = 1 - model.schedule.alpha_bar(t, x_t) / model.schedule.alpha_bar(t_prev, x_t)
        x = x_prev.detach().clone().requires_grad_(True)
        opt = torch.optim.Adagrad([x], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                log_p = -(x - mu).pow(2).flatten(1).sum(1) / (2 * var)
                objective = lam * log_p + score(x, t_prev)
                opt.zero_grad()
                (-objective.sum()).backward()
                opt.step()
        return x.detach()

    return hook


def label_score(model, y: torch.Tensor, kind: str = "I") -> Callable:
    """log p_phi(y | x, t) of the type-I or type-S classifier."""
    return lambda x, t: torch.log_softmax(model.class_logits(x, t, kind), -1).gather(1, y[:, None]).squeeze(1)


def chain(*hooks: Callable | None) -> Callable:
    """One hook applying ``hooks`` in turn (``None`` skipped)."""
    hooks = [h for h in hooks if h is not None]

    def hook(x_prev, **kw):
        for h in hooks:
            x_prev = h(x_prev, **kw)
        return x_prev

    return hook
