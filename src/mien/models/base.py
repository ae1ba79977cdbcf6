"""The model contract (design.md, Models): a config dataclass plus an ``nn.Module`` with
``loss(batch) -> dict`` and, where meaningful, ``encode``, ``decode`` and ``sample``.

Models register under a name so that a config's ``model.name`` picks the pair (the pythae
pattern); the training engine reads only this interface:

- ``loss(batch)`` returns ``loss`` (the objective of the ``model`` parameter group) plus named
  terms for logging; a model with several optimisers (e.g. FactorVAE's discriminator) also
  returns ``loss_<group>`` for each extra group of :meth:`param_groups`, and every group is
  stepped on its own loss (alternating optimisation).
- ``train_step`` is set by the engine before each step, for annealing schedules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from mien.config import from_dict, to_dict
from mien.errors import ConfigError


@dataclass
class ModelConfig:
    """Fields every image model shares."""

    name: str = ""
    image_size: int = 64
    in_channels: int = 3
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    blocks: int = 1


MODELS: dict[str, tuple[type, type]] = {}


def register(name: str, config_class: type):
    """Class decorator: make a model buildable from a config with ``name: <name>``."""

    def wrap(cls):
        cls.config_class = config_class
        cls.model_name = name
        MODELS[name] = (config_class, cls)
        return cls

    return wrap


class GenerativeModel(nn.Module):
    """Base class: holds the config and the engine's step counter."""

    config_class: type = ModelConfig
    model_name: str = ""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.train_step = 0

    def loss(self, batch: dict) -> dict:
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameter groups, one optimiser each; ``model`` is stepped on ``loss``."""
        return {"model": [p for p in self.parameters() if p.requires_grad]}

    def config_dict(self) -> dict:
        return {**to_dict(self.config), "name": self.model_name}


def _import_families():
    import mien.models  # noqa: F401  (registers the families)


def build_model(section: dict) -> GenerativeModel:
    """Build a model from the ``model:`` section of a config (``name`` plus its fields)."""
    _import_families()
    section = dict(section or {})
    name = section.get("name")
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    config_class, model_class = MODELS[name]
    config = from_dict(config_class, section, "model.")
    return model_class(config)


def model_fields(name: str) -> set[str]:
    """Config field names of a registered model (empty for an unknown name)."""
    _import_families()
    return {f.name for f in dataclasses.fields(MODELS[name][0])} if name in MODELS else set()


def images_of(batch: dict) -> torch.Tensor:
    """The image tensor of a batch, with a clear error when the data has none."""
    if "image" not in batch:
        raise ConfigError("this model trains on images but the data has no 'image' key")
    return batch["image"]
