"""Plug-and-play control of the 4D expression DDPM (Zou thesis §3.6, Alg. 2-4): text control,
filling of missing frames and geometry-adaptive generation from a given neutral face, each a hook
on the diffusion core's reverse step. Sequences are model units (B x F x N x 3) at the interface
and standardised coordinates inside."""

from __future__ import annotations

from typing import Callable

import torch

from mien.diffusion.guidance import inpaint
from mien.diffusion.plug_and_play import chain, label_score, refine, reverse
from mien.errors import ConfigError, DataError
from mien.models.expr4d.sampling import class_target, noise, sample_x_T

FILL_MODES = ("begin", "middle", "end")


def text_score(model, text_embedding: torch.Tensor) -> Callable:
    """cos(BiT(x, t), E(c)) of Eq. 3.10, E the text encoder."""
    return lambda x, t: (model.sequence_embedding(x, t) * text_embedding).sum(-1)


@torch.no_grad()
def text_control(model, text: str, n: int, frames: int, generator=None, **guidance) -> torch.Tensor:
    """Alg. 2: as Alg. 1 with the cosine between the text head and the encoded prompt (Eq. 3.10)."""
    x_T = sample_x_T(model, n, frames, generator)
    embedding = model.embed_text([text]).expand(n, -1)
    hook = refine(model, text_score(model, embedding), **guidance)
    return model.denormalise(reverse(model, x_T, hook, generator))


def fill_mask(frames: int, mode: str, known: int) -> torch.Tensor:
    """Known frames (F, True where given) of a filling task, named after the part that is filled:
    ``end`` (FFE: the first ``known`` frames are given), ``begin`` (FFB: the last ``known``), ``middle``
    (FFM: ``known`` frames at each end, §3.6.3)."""
    if mode not in FILL_MODES:
        raise ConfigError(f"unknown filling mode {mode!r}; choose one of {', '.join(FILL_MODES)}")
    given = 2 * known if mode == "middle" else known
    if not 1 <= known or given >= frames:
        raise ConfigError(f"{given} known frames leave nothing to fill in {frames} frames; give fewer known frames "
                          "or ask for more --frames")
    mask = torch.zeros(frames, dtype=torch.bool)
    if mode in ("end", "middle"):
        mask[:known] = True
    if mode in ("begin", "middle"):
        mask[frames - known:] = True
    return mask


def _known(model, known: torch.Tensor, mask: torch.Tensor):
    """Standardised known frames (B x F x 3N) and their mask broadcast over coordinates."""
    seq = model.check_sequences(known, "known sequence")
    mask = torch.as_tensor(mask, dtype=torch.bool, device=seq.device)
    mask = mask.expand(len(seq), -1) if mask.dim() == 1 else mask
    if mask.shape != seq.shape[:2]:
        raise DataError(f"the frame mask {tuple(mask.shape)} does not match the known sequence {tuple(seq.shape[:2])}")
    model.check_frames(seq.shape[1])
    return model.normalise(seq), mask[..., None].to(seq.dtype)


def _initial(model, x0_known, mask, generator):
    """x_T|S_U ~ N(0, I), x_T|S_K = sqrt(abar_T) x_0|S_K + sqrt(1 - abar_T) eps (Alg. 3, lines 1-2)."""
    kept = model.schedule.q_sample(x0_known, model.schedule.T - 1, noise(x0_known.shape, generator, x0_known.device))
    return mask * kept + (1 - mask) * noise(x0_known.shape, generator, x0_known.device)


@torch.no_grad()
def fill(model, known: torch.Tensor, mask: torch.Tensor, generator=None) -> torch.Tensor:
    """Alg. 3: known frames follow q(x_{t-1} | x_0) at every step and are the given frames at t = 0;
    ``known`` is B x F x N x 3 (values off the mask are ignored), ``mask`` F or B x F."""
    x0_known, m = _known(model, known, mask)
    hook = inpaint(x0_known, m, model.schedule, generator)
    return model.denormalise(reverse(model, _initial(model, x0_known, m, generator), hook, generator))


@torch.no_grad()
def geometry_adaptive(model, neutral: torch.Tensor, label=None, direction="N2E", frames: int = 40, n: int = 1,
                      generator=None, passes: int | None = None, restart: int | None = None,
                      **guidance) -> torch.Tensor:
    """Alg. 4: the neutral face (N x 3) is the known frame, first for N2E and last for E2N; with a
    label, each step is refined by the type-S classifier. Pass 1 starts as Alg. 3; passes 2.. start
    from the whole previous x_0 re-noised to x_T (as written), or to ``restart`` < T - 1 (a
    RePaint-style partial re-noise)."""
    neutral = torch.as_tensor(neutral, dtype=torch.float32)
    if neutral.shape != (model.config.landmarks, 3):
        raise DataError(f"the neutral face has shape {tuple(neutral.shape)}; it must be one frame of "
                        f"{model.config.landmarks} landmarks x 3")
    d = model.direction_index(direction)
    mask = torch.zeros(frames, dtype=torch.bool)
    mask[0 if d == 0 else frames - 1] = True
    x0_known, m = _known(model, neutral.expand(n, frames, -1, -1), mask)
    label_hook = None
    if label is not None:
        y, kind = class_target(model, label, direction)
        label_hook = refine(model, label_score(model, torch.full((n,), y, device=x0_known.device), kind), **guidance)
    hook = chain(label_hook, inpaint(x0_known, m, model.schedule, generator))
    T = model.schedule.T
    restart = T - 1 if restart is None else restart
    if not 0 <= restart < T:
        raise ConfigError(f"restart must lie in 0..{T - 1}, got {restart}")
    x0 = reverse(model, _initial(model, x0_known, m, generator), hook, generator)
    for _ in range(1, model.config.passes if passes is None else passes):
        x_start = model.schedule.q_sample(x0, restart, noise(x0.shape, generator, x0.device))
        x0 = reverse(model, x_start, hook, generator, start=restart)
    return model.denormalise(x0)


def place_known(frames_given: torch.Tensor, frames: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A filling task from K given frames (K x N x 3): the F-frame sequence with the given frames in
    place (zeros elsewhere) and its mask. ``end``/``begin``: the K frames open/close the sequence;
    ``middle``: the first K/2 open it and the last K/2 close it."""
    k = len(frames_given)
    if mode == "middle" and k % 2:
        raise DataError(f"filling the middle needs an even number of known frames (half at each end), got {k}")
    mask = fill_mask(frames, mode, k // 2 if mode == "middle" else k)
    seq = torch.zeros(frames, *frames_given.shape[1:])
    seq[mask] = frames_given
    return seq, mask
