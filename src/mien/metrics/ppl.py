"""Perceptual path length (Karras et al. 2019, Sec. 3.1; Karras et al. 2020, Sec. 3.2; Haas
thesis Eq. 2.15, digest §1.8): how much the image changes, perceptually, under a small step along
an interpolation path in a latent space,

    l_W = E[ eps^-2 d(g(lerp(w1, w2; t)), g(lerp(w1, w2; t + eps))) ],   w_i = f(z_i)
    l_Z = E[ eps^-2 d(G(slerp(z1, z2; t)), G(slerp(z1, z2; t + eps))) ],

z_i ~ N(0, I), eps = 1e-4, d the perceptual distance (default ``lpips_mien``: the LPIPS formula
on the evaluator's features, :func:`mien.evaluator.perceptual.lpips_distance`), no truncation.
Sampling ``full``: t ~ U(0, 1); ``end``: t at an end point (Karras et al. 2019: t in {0, 1}; the
official code uses t = 0 only, which by the exchange symmetry of z1, z2 has the same expectation).
At t = 1 the step goes inwards, (1 - eps, 1), so every code stays on the segment. Both images of a
pair share one draw of the per-layer noise (the official code's fixed noise). Before averaging,
the values outside [1st, 99th] percentile are discarded (the official filter: numpy's 'lower' and
'higher' percentiles). ``crop`` takes the official FFHQ centre crop (rows 3/8 to 7/8, columns 1/4
to 3/4 of the image: the face in FFHQ's alignment) before the distance; the official code then
averages down to 256 px, which the evaluator's own resizing replaces.

The generator is any model with ``draw_z``, ``map``, ``broadcast``, ``synthesize`` and
``noise_maps`` (:class:`StyleGenerator`; the StyleGAN2 family). Z interpolates the whole input of
the mapping network (InfoGAN's codes included; the mapping network pixel-normalises it); a
conditional GAN keeps one label per pair.
"""

from __future__ import annotations

import math
from typing import Callable, Protocol, runtime_checkable

import torch

from mien.errors import ConfigError, DataError

EPS = 1e-4
SPACES = ("w", "z")
SAMPLINGS = ("full", "end")


@runtime_checkable
class StyleGenerator(Protocol):
    def draw_z(self, n: int, generator=None): ...

    def map(self, z: torch.Tensor, labels=None) -> torch.Tensor: ...

    def broadcast(self, w: torch.Tensor) -> torch.Tensor: ...

    def synthesize(self, ws: torch.Tensor, noise=None) -> torch.Tensor: ...

    def noise_maps(self, n: int, generator=None) -> list: ...


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """a + t (b - a), t per row."""
    return a + (b - a) * t[:, None]


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of a and b (a unit vector; the official code's):
    cos(t theta) a^ + sin(t theta) c^, theta the angle between them, c^ the unit part of b^
    orthogonal to a^."""
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    d = (a * b).sum(1, keepdim=True)
    p = t[:, None] * torch.acos(d.clamp(-1, 1))
    c = b - d * a
    c = c / c.norm(dim=1, keepdim=True)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=1, keepdim=True)


def centre_crop(images: torch.Tensor) -> torch.Tensor:
    """The official FFHQ crop: rows 3c..7c, columns 2c..6c with c = H // 8."""
    c = images.shape[2] // 8
    return images[:, :, 3 * c:7 * c, 2 * c:6 * c]


def step_times(n: int, sampling: str, eps: float, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, t + eps) per pair, in float64: ``full`` draws t ~ U(0, 1); ``end`` picks t = 0 or
    t = 1 - eps (the step (1 - eps, 1)) with equal probability."""
    if sampling == "full":
        t0 = torch.rand(n, generator=generator, dtype=torch.float64)
    else:
        t0 = torch.randint(0, 2, (n,), generator=generator).double() * (1 - eps)
    return t0, t0 + eps


def filtered_mean(values: torch.Tensor, low: float = 1.0, high: float = 99.0) -> float:
    """Mean of the values within [low-th, high-th] percentile (the 'lower' and 'higher' order
    statistics, as numpy's percentile in the official code)."""
    v = values.double().flatten()
    if not torch.isfinite(v).all():
        raise DataError("perceptual path lengths are not finite (the generator produced NaN or inf images); "
                        "check the checkpoint")
    lo = torch.quantile(v, low / 100, interpolation="lower")
    hi = torch.quantile(v, high / 100, interpolation="higher")
    return v[(v >= lo) & (v <= hi)].mean().item()


def pair_lengths(model, z0: torch.Tensor, z1: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor, space: str,
                 distance: Callable, eps: float = EPS, labels=None, noise=None, crop: bool = False) -> torch.Tensor:
    """eps^-2 d(g(path(t0)), g(path(t1))) for each pair (z0_i, z1_i): slerp in Z, lerp in W."""
    t0, t1 = t0.to(z0), t1.to(z0)
    both = None if labels is None else torch.cat([labels, labels])
    if space == "z":
        codes = model.map(torch.cat([slerp(z0, z1, t0), slerp(z0, z1, t1)]), both)
    else:
        w0, w1 = model.map(torch.cat([z0, z1]), both).chunk(2)
        codes = torch.cat([lerp(w0, w1, t0.to(w0)), lerp(w0, w1, t1.to(w0))])
    noise = None if noise is None else [torch.cat([m, m]) for m in noise]
    images = model.synthesize(model.broadcast(codes), noise)
    if crop:
        images = centre_crop(images)
    a, b = images.chunk(2)
    return distance(a, b).double() / eps ** 2


def _check(model, space: str, sampling: str, eps: float, n: int) -> None:
    if not isinstance(model, StyleGenerator):
        raise ConfigError(f"{type(model).__name__} has no mapping and synthesis networks; perceptual path length "
                          "needs a StyleGAN-family generator (stylegan, cgan, infogan)")
    if space not in SPACES:
        raise ConfigError(f"unknown PPL space {space!r}; choose from {', '.join(SPACES)}")
    if sampling not in SAMPLINGS:
        raise ConfigError(f"unknown PPL sampling {sampling!r}; choose from {', '.join(SAMPLINGS)}")
    if not (math.isfinite(eps) and 0 < eps < 1):
        raise ConfigError(f"PPL epsilon {eps} must be in (0, 1); the paper uses 1e-4")
    if n < 2:
        raise ConfigError(f"PPL needs at least 2 pairs, got {n}")


@torch.no_grad()
def path_lengths(model, n: int, space: str = "w", sampling: str = "full", eps: float = EPS,
                 distance: Callable | None = None, evaluator=None, crop: bool = False, batch_size: int = 100,
                 seed: int = 0, progress=None) -> torch.Tensor:
    """The n per-pair values eps^-2 d(...) (before the percentile filter), in batches, from ``seed``;
    ``distance(a, b)`` -> one value per image pair (default: lpips_mien with ``evaluator``, or the
    evaluator for the model's image size)."""
    _check(model, space, sampling, eps, n)
    if distance is None:
        from mien.evaluator import evaluator_for
        from mien.evaluator.perceptual import lpips_distance

        ev = evaluator or evaluator_for(model.config.image_size)
        distance = lambda a, b: lpips_distance(ev, a, b)  # noqa: E731
    generator = torch.Generator().manual_seed(seed)
    labels_for = getattr(model, "labels_for", None)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z0, z1 = model.draw_z(2 * m, generator)[0].chunk(2)
        t0, t1 = step_times(m, sampling, eps, generator)
        labels = labels_for(None, m, generator) if labels_for else None
        noise = model.noise_maps(m, generator)
        out.append(pair_lengths(model, z0, z1, t0, t1, space, distance, eps, labels, noise, crop).cpu())
        if progress:
            progress(m)
    return torch.cat(out)


def perceptual_path_length(model, n: int = 10000, space: str = "w", sampling: str = "full", eps: float = EPS,
                           distance: Callable | None = None, evaluator=None, crop: bool = False,
                           batch_size: int = 100, seed: int = 0, progress=None) -> float:
    """PPL in ``space`` (w: lerp, z: slerp) with ``sampling`` (full, end): the percentile-filtered
    mean of :func:`path_lengths` over n pairs (StyleGAN: 100k pairs; fewer are noisier)."""
    return filtered_mean(path_lengths(model, n, space, sampling, eps, distance, evaluator, crop, batch_size, seed,
                                      progress))
