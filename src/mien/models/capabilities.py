"""What a model can do, as small protocols (design.md, Models): code that needs a capability
checks for the protocol instead of probing attributes one by one.

- :class:`Sampler`: ``sample(n, cond=None, generator=None)``, a sample dict (``image`` or
  ``sequence``, later ``mesh`` and ``audio``; see :func:`as_sample`);
- :class:`Reconstructor`: ``reconstruct`` (an autoencoder, or a latent diffusion model through
  its first stage);
- :class:`Autoencoder`: ``encode``, ``decode``, ``reconstruct``;
- :class:`FirstStage`: a spatial latent for latent diffusion (``encode_latent``, ``decode_latent``,
  ``latent_shape``);
- :class:`LatentSpaces`: ``latent_spaces()``, the named spaces a model exposes to ``mien.control``;
- :class:`LabelModel`: a model of binary labels and their features (M2, CCVAE, JDVAE):
  ``encode_parts``, ``decode_parts`` and ``predict`` (argmax q(y|x)), the swaps of ``mien.control.swap``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Sampler(Protocol):
    def sample(self, n: int, cond=None, generator=None): ...


@runtime_checkable
class Reconstructor(Protocol):
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Autoencoder(Protocol):
    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class FirstStage(Protocol):
    latent_shape: tuple

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class LatentSpaces(Protocol):
    def latent_spaces(self) -> dict: ...


@runtime_checkable
class LabelModel(Protocol):
    def encode_parts(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict: ...

    def decode_parts(self, parts: dict) -> torch.Tensor: ...

    def predict(self, x: torch.Tensor) -> torch.Tensor: ...
