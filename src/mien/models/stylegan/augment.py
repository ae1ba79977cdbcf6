"""Differentiable augmentation with an adaptive probability (ADA; Karras et al. 2020b, "Training
Generative Adversarial Networks with Limited Data", Sec. 2-3, App. B), for small real datasets.

Every transform is applied to each image independently with probability p, to real and generated
images alike before the discriminator, and is differentiable in the image (affine resampling with
``grid_sample``, colour as a 4 x 4 matrix on homogeneous RGB), so the generator learns through it:

- geometric ("bg" of the paper): x-flip, 90-degree rotations, integer translation (+-0.125),
  isotropic scaling (lognormal, std 0.2 ln 2), rotation (uniform), anisotropic scaling and
  fractional translation (std 0.125), composed into one affine map per image;
- colour ("c"): brightness (std 0.2), contrast (lognormal, 0.5 ln 2), luma flip, hue rotation,
  saturation (lognormal, ln 2).

Departure from the paper: resampling is bilinear with reflection padding, not the paper's
wavelet-filtered up/down-sampling (less alias-free; stated in the README).

The adaptive heuristic (ADA Eq. 1 and Sec. 3): r_t = E[sign(D(x_real))] over the last
``interval`` steps; p <- clip(p + sign(r_t - target) * batch * interval / (speed_kimg * 1000), 0, 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LUMA = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)


def _chance(n: int, p: float, device) -> torch.Tensor:
    return (torch.rand(n, device=device) < p).float()


def _geometric(n: int, p: float, device) -> torch.Tensor:
    """n x 3 x 3 affine maps (output coordinates -> input coordinates, in [-1, 1])."""
    eye = torch.eye(3, device=device).repeat(n, 1, 1)

    def mat(a, b, c, d, e, f):
        m = eye.clone()
        m[:, 0, 0], m[:, 0, 1], m[:, 0, 2], m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = a, b, c, d, e, f
        return m

    one, zero = torch.ones(n, device=device), torch.zeros(n, device=device)
    flip = 1 - 2 * (_chance(n, p, device) * torch.randint(0, 2, (n,), device=device))
    m = mat(flip, zero, zero, zero, one, zero)
    k = _chance(n, p, device) * torch.randint(0, 4, (n,), device=device)
    theta = k * math.pi / 2
    m = m @ mat(theta.cos(), -theta.sin(), zero, theta.sin(), theta.cos(), zero)
    t = _chance(n, p, device)[:, None] * (torch.rand(n, 2, device=device) * 2 - 1) * 0.125 * 2
    m = m @ mat(one, zero, t[:, 0], zero, one, t[:, 1])
    s = torch.exp2(_chance(n, p, device) * torch.randn(n, device=device) * 0.2)
    m = m @ mat(s, zero, zero, zero, s, zero)
    theta = _chance(n, p, device) * (torch.rand(n, device=device) * 2 - 1) * math.pi
    m = m @ mat(theta.cos(), -theta.sin(), zero, theta.sin(), theta.cos(), zero)
    a = torch.exp2(_chance(n, p, device) * torch.randn(n, device=device) * 0.2)
    m = m @ mat(a, zero, zero, zero, 1 / a, zero)
    t = _chance(n, p, device)[:, None] * torch.randn(n, 2, device=device) * 0.125 * 2
    return m @ mat(one, zero, t[:, 0], zero, one, t[:, 1])


def _colour(n: int, p: float, device) -> torch.Tensor:
    """n x 4 x 4 colour maps on homogeneous RGB in [-1, 1]."""
    eye = torch.eye(4, device=device).repeat(n, 1, 1)
    v = LUMA.to(device)
    b = _chance(n, p, device) * torch.randn(n, device=device) * 0.2 * 2
    m = eye.clone()
    m[:, :3, 3] = b[:, None]
    c = torch.exp2(_chance(n, p, device) * torch.randn(n, device=device) * 0.5)
    m = torch.diag_embed(torch.stack([c, c, c, torch.ones_like(c)], 1)) @ m
    flip = _chance(n, p, device) * torch.randint(0, 2, (n,), device=device)
    m = (eye - 2 * torch.outer(v, v)[None] * flip[:, None, None]) @ m
    theta = _chance(n, p, device) * (torch.rand(n, device=device) * 2 - 1) * math.pi
    m = _rotation_about(v[:3], theta) @ m
    sat = torch.exp2(_chance(n, p, device) * torch.randn(n, device=device))
    vv = torch.outer(v, v)[None]
    return (vv + (eye - vv) * sat[:, None, None]) @ m


def _rotation_about(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """n x 4 x 4 rotations of RGB about the unit ``axis`` by angles theta (Rodrigues)."""
    n = theta.shape[0]
    x, y, z = axis
    k = torch.tensor([[0, -z, y], [z, 0, -x], [-y, x, 0]], device=theta.device)
    r = torch.eye(3, device=theta.device) + theta.sin()[:, None, None] * k \
        + (1 - theta.cos())[:, None, None] * (k @ k)
    m = torch.eye(4, device=theta.device).repeat(n, 1, 1)
    m[:, :3, :3] = r
    return m


def augment(images: torch.Tensor, p: float) -> torch.Tensor:
    """Images (n x C x H x W in [-1, 1]) with each transform applied with probability p."""
    if p <= 0:
        return images
    n, device = images.shape[0], images.device
    grid = F.affine_grid(_geometric(n, p, device)[:, :2].to(images.dtype), list(images.shape), align_corners=False)
    x = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if x.shape[1] == 3:
        m = _colour(n, p, device).to(x.dtype)
        x = (m[:, :3, :3] @ x.flatten(2) + m[:, :3, 3:]).reshape(x.shape)
    return x


def adjust_p(p: float, sign_mean: float, target: float, images: int, speed_kimg: float) -> float:
    """One ADA update: p + sign(r_t - target) * images / (speed_kimg * 1000), clipped to [0, 1]."""
    step = math.copysign(images / (speed_kimg * 1000), sign_mean - target) if sign_mean != target else 0.0
    return min(1.0, max(0.0, p + step))
