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


class NoisyClassifier(nn.Module):
    """A classifier of noisy inputs p_phi(y | x_t, t) for classifier guidance: an MLP (flat
    inputs) or a small CNN (images) with a sinusoidal timestep embedding added to its features."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, hidden: int = 128, T: int = 1000):
        super().__init__()
        self.T = T
        if len(in_shape) == 1:
            self.features = nn.Sequential(nn.Linear(in_shape[0], hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        else:
            c = in_shape[0]
            self.features = nn.Sequential(
                nn.Conv2d(c, hidden // 4, 3, 2, 1), nn.SiLU(), nn.Conv2d(hidden // 4, hidden // 2, 3, 2, 1), nn.SiLU(),
                nn.Conv2d(hidden // 2, hidden, 3, 2, 1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU())
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, num_classes))
        self.hidden = hidden

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).float().expand(len(x))
        return self.head(self.features(x) + self.time(timestep_embedding(t, self.hidden)))


def train_noisy_classifier(classifier: NoisyClassifier, schedule: NoiseSchedule, data: Callable[[int], tuple],
                           steps: int = 500, batch_size: int = 128, lr: float = 1e-3,
                           generator: torch.Generator | None = None) -> NoisyClassifier:
    """Fit p_phi(y | x_t, t) by cross-entropy on x_t ~ q(x_t | x0), t ~ U{0..T-1};
    ``data(n)`` returns a batch (x0, y)."""
    opt = torch.optim.Adam(classifier.parameters(), lr=lr)
    for _ in range(steps):
        x0, y = data(batch_size)
        t = torch.randint(schedule.T, (len(x0),), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        xt = schedule.q_sample(x0, t, noise)
        logits = classifier(xt, t)
        loss = nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return classifier.eval()
