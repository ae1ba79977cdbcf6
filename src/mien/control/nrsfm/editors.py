"""Editing latents through phi (Haas P-III §3.3-3.4; thesis Ch. 4.3, Eqs. 4.16-4.17).

- :func:`linear_edit`: w = w_0 + J^+ (q - q_0), J = d phi / d w at w_0 (P-III Eq. 14 = Eq. 4.16),
  one step; ``damping`` > 0 uses the damped pseudo-inverse J^T (J J^T + lambda I)^-1 (a departure
  the digest suggests; lambda is relative to the mean eigenvalue of J J^T, so it has no units);
- :func:`gradient_edit`: min_w ||phi(w) - q_target||^2 + lambda D(G(w), G(w_0)) by Adam from w_0
  (P-III Eq. 15 = Eq. 4.17), D pluggable: :func:`identity_distance` (1 - cosine of the evaluator's
  identity embeddings: csim_mien's embedding, standing in for ArcFace) or :func:`lpips_term`
  (lpips_mien); optimiser and step count are unspecified in the thesis (Adam, lr 0.01, 100 steps);
- :func:`transfer`: q of one face with the full q, the pose theta only or the expression alpha only
  of another (P-III §4.4);
- :func:`turn`: q with the head turned by yaw, pitch, roll degrees in the world's convention
  (image y down: theta_x = pitch, theta_y = -yaw, theta_z = -roll; exact for one angle at a time);
- :func:`conditional_sample`: sampled codes edited towards a fixed q or part of it (Fig. 4.3).
"""

from __future__ import annotations

import math

import torch

from mien.control.nrsfm.estimator import split_q
from mien.errors import ConfigError, DataError

PARTS = ("all", "pose", "expression")


def jacobian(phi, code: torch.Tensor) -> torch.Tensor:
    """J = d phi / d code at one code (the space's shape): (K + 8) x prod(shape)."""
    shape = code.shape

    def f(v):
        return phi(v.reshape(1, *shape))[0]

    return torch.func.jacrev(f)(code.detach().float().reshape(-1))


def pseudo_inverse(J: torch.Tensor, damping: float = 0.0) -> torch.Tensor:
    """J^+ (Moore-Penrose, in J's float32 as renhaa/rankonegan's ``torch.pinverse``: singular values
    below about 1e-6 of the largest are dropped), or with ``damping`` > 0 the damped
    J^T (J J^T + lambda m I)^-1 with m the mean eigenvalue of J J^T."""
    if damping == 0:
        return torch.linalg.pinv(J.float())
    JJ = J.double() @ J.double().T
    m = JJ.diagonal().mean()
    return (J.double().T @ torch.linalg.inv(JJ + damping * m * torch.eye(len(JJ), dtype=JJ.dtype))).float()


def _check_targets(codes: torch.Tensor, q_target: torch.Tensor, phi) -> torch.Tensor:
    q_target = torch.as_tensor(q_target).float()
    q_target = q_target.expand(len(codes), -1) if q_target.dim() == 1 else q_target
    if q_target.shape != (len(codes), phi.n_bases + 8):
        raise DataError(f"q targets of shape {tuple(q_target.shape)} for {len(codes)} codes; "
                        f"give one q of {phi.n_bases + 8} entries per code")
    if not torch.isfinite(q_target).all():
        raise DataError("the q targets hold NaN or infinite values")
    return q_target


def linear_edit(phi, codes: torch.Tensor, q_target, damping: float = 0.0) -> torch.Tensor:
    """Eq. 14 per code: codes + J^+ (q_target - phi(codes)) (B x the space's shape)."""
    if not (damping >= 0 and math.isfinite(damping)):
        raise ConfigError(f"damping={damping}; give a finite value >= 0")
    q_target = _check_targets(codes, q_target, phi)
    out = []
    for code, target in zip(codes, q_target):
        with torch.no_grad():
            q0 = phi(code[None])[0]
        step = pseudo_inverse(jacobian(phi, code), damping) @ (target - q0)
        out.append(code.float() + step.reshape(code.shape))
    return torch.stack(out)


def gradient_edit(phi, codes: torch.Tensor, q_target, distance=None, lam: float = 0.01, steps: int = 100,
                  lr: float = 0.01) -> torch.Tensor:
    """Eq. 15: Adam on sum_i ||phi(w_i) - q_i||^2 + lam D_i(w_i) from w_i = codes_i; ``distance``
    maps the current codes (B x shape) to B distances (None: no regulariser)."""
    if not (steps >= 1 and lr > 0 and lam >= 0):
        raise ConfigError("steps must be >= 1, lr > 0 and lam >= 0")
    q_target = _check_targets(codes, q_target, phi)
    w = codes.detach().float().clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        loss = (phi(w) - q_target).pow(2).sum()
        if distance is not None and lam > 0:
            loss = loss + lam * distance(w).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach()


def identity_distance(render, evaluator, codes0: torch.Tensor):
    """D(G(w), G(w_0)) = 1 - cos(e(G(w)), e(G(w_0))) with e the evaluator's unit identity
    embedding (the embedding csim_mien compares); ``render`` maps codes to images."""
    with torch.no_grad():
        e0 = evaluator(render(codes0))["identity"]

    def distance(codes):
        return 1 - (evaluator(render(codes))["identity"] * e0).sum(1)

    return distance


def lpips_term(render, evaluator, codes0: torch.Tensor):
    """D(G(w), G(w_0)) = lpips_mien (the LPIPS formula on the evaluator's features, per image)."""
    from mien.evaluator.perceptual import lpips_distance

    with torch.no_grad():
        x0 = render(codes0)

    def distance(codes):
        return lpips_distance(evaluator, render(codes), x0)

    return distance


def transfer(q_source: torch.Tensor, q_dest: torch.Tensor, K: int, part: str = "all") -> torch.Tensor:
    """The destination's q with the source's full q (``all``), pose theta (``pose``) or
    expression alpha (``expression``) copied in (P-III §4.4: w~_2 = Omega_{w_2}(q_1))."""
    if part not in PARTS:
        raise ConfigError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    q_source, q_dest = torch.as_tensor(q_source), torch.as_tensor(q_dest)
    q_source = q_source.expand_as(q_dest) if q_source.dim() < q_dest.dim() else q_source
    if part == "all":
        return q_source.clone()
    out = q_dest.clone()
    span = slice(3, 6) if part == "pose" else slice(6, 6 + K)
    out[..., span] = q_source[..., span]
    return out


def turn(q: torch.Tensor, K: int, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> torch.Tensor:
    """q with theta moved by (pitch, -yaw, -roll) degrees: the world's yaw/pitch/roll (positive yaw
    turns the face to image right) in the NRSfM's R_z R_y R_x with image y down."""
    for name, value in (("yaw", yaw), ("pitch", pitch), ("roll", roll)):
        if not math.isfinite(value):
            raise DataError(f"{name}={value}; give a finite angle in degrees")
    k, theta, alpha, t = split_q(q, K)
    delta = torch.deg2rad(torch.tensor([pitch, -yaw, -roll], dtype=q.dtype))
    return torch.cat([k, theta + delta, alpha, t], -1)


def conditional_sample(phi, codes: torch.Tensor, q_fixed: torch.Tensor, part: str = "all", editor: str = "linear",
                       **options) -> torch.Tensor:
    """Sampled ``codes`` edited towards ``q_fixed`` (all of it, its pose or its expression; Fig. 4.3)
    by the ``linear`` or ``gradient`` editor (``options`` go to it)."""
    with torch.no_grad():
        q0 = phi(codes)
    target = transfer(torch.as_tensor(q_fixed).float(), q0, phi.n_bases, part)
    return edit(phi, codes, target, editor, **options)


def edit(phi, codes: torch.Tensor, q_target, editor: str = "linear", **options) -> torch.Tensor:
    """Dispatch to :func:`linear_edit` (option damping) or :func:`gradient_edit` (distance, lam, steps, lr)."""
    if editor == "linear":
        return linear_edit(phi, codes, q_target, **options)
    if editor == "gradient":
        return gradient_edit(phi, codes, q_target, **options)
    raise ConfigError(f"unknown editor {editor!r}; choose linear or gradient")
