"""Guidance (Pikoulis §3.3): classifier-free guidance, classifier guidance with a classifier of
noisy inputs, inpainting with RePaint harmonisation, and the general per-step hook.

Classifier-free guidance uses the source's convention (Pikoulis Eq. 3.70):
eps~ = (1 - gamma) eps(x_t | null) + gamma eps(x_t | y); gamma = 0 is the unconditional model,
gamma = 1 the conditional one, gamma > 1 over-conditions (gamma = 1 + w of Ho & Salimans).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mien.diffusion.sampling import Denoise
from mien.diffusion.schedule import NoiseSchedule
from mien.nn.embeddings import timestep_embedding


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 - gamma) eps_uncond + gamma eps_cond (Pikoulis Eq. 3.70)."""
    return (1 - gamma) * eps_uncond + gamma * eps_cond


def classifier_free(model: Callable, cond: torch.Tensor, null: torch.Tensor, gamma: float) -> Denoise:
    """A denoiser applying CFG to ``model(x, t, cond)``; one batched call for both branches."""
    if gamma == 1.0:
        return lambda x, t: model(x, t, cond)
    if gamma == 0.0:
        return lambda x, t: model(x, t, null)

    def denoise(x, t):
        out = model(torch.cat([x, x]), t, torch.cat([null, cond]))
        uncond, conditional = out.chunk(2)
        return cfg_combine(uncond, conditional, gamma)

    return denoise


def classifier_guided(denoise: Denoise, classifier: Callable, y: torch.Tensor, gamma: float,
                      schedule: NoiseSchedule) -> Denoise:
    """eps^(x_t | y) = eps(x_t) - gamma sqrt(1 - abar_t) grad_x log p_phi(y | x_t, t) (Pikoulis Eq. 3.68;
    Dhariwal & Nichol 2021). ``classifier(x, t)`` returns logits; ``denoise`` must predict eps."""

    def guided(x, t):
        eps = denoise(x, t)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logp = torch.log_softmax(classifier(xg, t), -1).gather(1, y[:, None]).sum()
            grad = torch.autograd.grad(logp, xg)[0]
        return eps - gamma * (1 - schedule.alpha_bar(t, x)).sqrt() * grad

    return guided


def inpaint(x0_known: torch.Tensor, mask: torch.Tensor, schedule: NoiseSchedule,
            generator: torch.Generator | None = None):
    """Hook keeping the known region (mask = 1) on the forward process: after each step the known
    part of x_{t-1} is replaced by a fresh sample of q(x_{t-1} | x0), and by x0 itself at the end
    (RePaint, Lugmayr et al. 2022; Zou Alg. 3 uses the same rule on frames)."""

    def hook(x_prev, *, t_prev, **_):
        if t_prev < 0:
            known = x0_known
        else:
            noise = torch.randn(x0_known.shape, generator=generator, dtype=x0_known.dtype).to(x0_known.device)
            known = schedule.q_sample(x0_known, t_prev, noise)
        return mask * known + (1 - mask) * x_prev

    return hook
