"""h-space of a diffusion U-Net (Haas Paper V, §3 and SM A-B): capture the bottleneck activation
h_t (the output of the mid block) at every step, and inject an offset delta-h_t there.

The offset is added inside the single U-Net pass, so both the predicted x0 (P_t) and the
direction term (D_t) of the DDIM step use the edited prediction; skip connections still carry
unedited features. :meth:`HSpace.asyrrp` gives the Asyrrp variant (Kwon et al. 2023; Haas P-V
§3, SM B) where only P_t is edited, at two U-Net passes per step.
Works on any module with a ``mid_block`` (diffusers' UNet2DModel / UNet2DConditionModel, mien's
UNetDenoiser), including U-Nets a user loads from local files.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn


def mid_block_of(unet: nn.Module) -> nn.Module:
    for candidate in (unet, getattr(unet, "unet", None)):
        if candidate is not None and hasattr(candidate, "mid_block"):
            return candidate.mid_block
    raise TypeError("the network has no mid_block; h-space needs a diffusers-style U-Net")


class HSpace:
    """Forward hooks on the mid block. ``offsets`` maps a timestep to delta-h (or is a callable
    t -> delta-h or None); the current timestep is set by the denoiser wrapper of
    :meth:`denoiser`."""

    def __init__(self, unet: nn.Module):
        self.unet, self.block = unet, mid_block_of(unet)
        self.t: int | None = None
        self.offsets: Callable | dict | None = None
        self.captured: dict[int, torch.Tensor] = {}
        self.capturing = False
        self._handle = self.block.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.capturing and self.t is not None:
            self.captured[self.t] = output.detach().clone()
        if self.offsets is not None and self.t is not None:
            delta = self.offsets(self.t) if callable(self.offsets) else self.offsets.get(self.t)
            if delta is not None:
                return output + delta
        return output

    def remove(self) -> None:
        self._handle.remove()

    def denoiser(self, net: Callable, *args) -> Callable:
        """A ``denoise(x, t)`` that records t for the hooks, then calls ``net(x, t, *args)``."""

        def denoise(x, t):
            self.t = int(t)
            return net(x, t, *args)

        return denoise

    @contextmanager
    def capture(self):
        """Record h_t of every step into ``self.captured`` (timestep -> B x C x h x w)."""
        self.captured, self.capturing = {}, True
        try:
            yield self.captured
        finally:
            self.capturing = False

    @contextmanager
    def inject(self, offsets):
        """Add delta-h_t at every step: ``offsets`` is {t: tensor}, a tensor for all t, or t -> tensor."""
        previous = self.offsets
        self.offsets = (lambda t: offsets) if torch.is_tensor(offsets) else offsets
        try:
            yield self
        finally:
            self.offsets = previous

    def asyrrp(self, net: Callable, offsets, *args) -> tuple[Callable, Callable]:
        """(edited, plain) denoisers for Asyrrp: ``sample(edited, ..., direction=plain)`` puts the
        edited eps into P_t and the unedited eps into D_t. ``offsets`` as for :meth:`inject`."""
        plain = self.denoiser(net, *args)

        def edited(x, t):
            with self.inject(offsets):
                return plain(x, t)

        return edited, plain
