"""GAN losses and regularisers of StyleGAN2, each a small named function (Haas thesis Ch. 2.1,
digest §1.1; Karras et al. 2020, Sec. 3-4; Mescheder et al. 2018 for R1; Chen et al. 2016 and Zou
Eqs. 2.34-2.35 for InfoGAN).

Glossary: D(x) the discriminator's logit, softplus(t) = log(1 + e^t), so that
-log sigmoid(t) = softplus(-t) and -log(1 - sigmoid(t)) = softplus(t).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def d_logistic(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's side of Eq. 2.1: -log D(x) - log(1 - D(G(z))), mean over the batch."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014; Haas §2.1)."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 = E ||grad_x D(x)||^2 on real images (Mescheder et al. 2018, Eq. 9 without gamma / 2);
    ``real_images`` must require grad and ``real_logits`` come from them."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def path_length_penalty(images: torch.Tensor, ws: torch.Tensor, pl_mean: torch.Tensor,
                        decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2's path-length regulariser (Karras et al. 2020, Eq. 4): with y ~ N(0, I) / sqrt(HW),
    a_w = ||J_w^T y||_2 (the gradient of <g(w), y> per W+ code, summed over codes, averaged over
    codes as in the official code); penalty = E (a_w - a)^2 with a the running mean, updated as
    a <- a + decay (E a_w - a). Returns (penalty, the updated mean)."""
    y = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)
    lengths = grad.pow(2).sum(2).mean(1).sqrt()
    mean = pl_mean.lerp(lengths.mean().detach(), decay)
    return (lengths - mean).pow(2).mean(), mean


def info_nll(logits: list[torch.Tensor], mean: torch.Tensor, log_std: torch.Tensor,
             categorical: list[torch.Tensor], continuous: torch.Tensor) -> torch.Tensor:
    """-E log Q(c | G(z, c)): cross-entropy of each categorical code plus the Gaussian negative
    log-likelihood of the continuous codes (a factored Gaussian, Chen et al. 2016, Sec. 6). The
    mutual-information lower bound is L_I = H(c) - info_nll (Zou Eq. 2.35)."""
    nll = sum((F.cross_entropy(lg, c) for lg, c in zip(logits, categorical)), torch.zeros((), device=mean.device))
    if continuous.shape[1]:
        z = (continuous - mean) * torch.exp(-log_std)
        nll = nll + (0.5 * z.pow(2) + log_std + 0.5 * math.log(2 * math.pi)).sum(1).mean()
    return nll


def code_entropy(categorical: list[int], continuous: int) -> float:
    """H(c) of uniform categorical codes and continuous codes uniform on [-1, 1] (log 2 each)."""
    return sum(math.log(k) for k in categorical) + continuous * math.log(2.0)
