"""The model contract (design.md, Models): a config dataclass plus an ``nn.Module`` with
``loss(batch, step) -> dict`` and, where meaningful, ``encode``, ``decode`` and ``sample``.

Models register under a name so that a config's ``model.name`` picks the pair (the pythae
pattern); the training engine reads only this interface:

- :meth:`GenerativeModel.phases`: the training schedule, an ordered list of :class:`Phase`
  (parameter group, loss function, period). The default is one phase, ``loss`` on the ``model``
  group; a two-player model (FactorVAE, a GAN) or one with auxiliary heads declares several.
- :meth:`GenerativeModel.param_groups`: the parameters each group's optimiser steps.
- :meth:`GenerativeModel.ema_modules`: the sub-modules whose weights the engine averages.
- :meth:`GenerativeModel.fit_data`: statistics fitted from data before step 0 (buffers).

The engine passes the step (one per batch) to every loss function; models hold no step counter.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from mien.config import from_dict, to_dict
from mien.errors import ConfigError


@dataclass
class ModelConfig:
    """What every model config has: its family's registered ``name``.

    Facts that come from the data reach a config through one classmethod, :meth:`from_data`,
    which each config class extends for the facts it needs (never the trainer editing fields)."""

    name: str = ""

    @classmethod
    def from_data(cls, section: dict, data) -> "ModelConfig":
        """The config of ``section`` (the ``model:`` fields) completed with facts of the training
        data set ``data`` (its size, factor schema, ...); fields set in ``section`` are kept and
        checked against the data."""
        return from_dict(cls, section, "model.")


@dataclass
class ImageConfig(ModelConfig):
    """Fields every image model shares; ``image_size`` comes from the data (``data.size``)."""

    image_size: int = 64
    in_channels: int = 3
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    blocks: int = 1

    @classmethod
    def from_data(cls, section: dict, data) -> "ImageConfig":
        section, size = dict(section), getattr(data, "size", None)
        if size is not None:
            if section.setdefault("image_size", size) != size:
                raise ConfigError(f"model.image_size {section['image_size']} differs from the data's size {size}; "
                                  "drop model.image_size or set data.size to match")
        return super().from_data(section, data)


@dataclass
class ConditionalConfig(ImageConfig):
    """An image model conditioned on one categorical factor of the data (``condition``); its
    class names and count come from the data's factor schema."""

    condition: str | None = None
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.condition and self.num_classes < 2:
            raise ConfigError(f"a model conditioned on {self.condition!r} needs model.num_classes >= 2")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError("model.class_names needs one name per class")

    @classmethod
    def from_data(cls, section: dict, data) -> "ConditionalConfig":
        section = dict(section)
        factor = {f.name: f for f in getattr(data, "factors", [])}.get(section.get("condition"))
        if factor is not None and factor.values and not section.get("class_names"):
            section["class_names"] = list(factor.values)
            section.setdefault("num_classes", len(factor.values))
        return super().from_data(section, data)


MODELS: dict[str, tuple[type, type]] = {}


def register(name: str, config_class: type):
    """Class decorator: make a model buildable from a config with ``name: <name>``."""

    def wrap(cls):
        cls.config_class = config_class
        cls.model_name = name
        MODELS[name] = (config_class, cls)
        return cls

    return wrap


@dataclass(frozen=True)
class Phase:
    """One optimisation phase of a training step (design.md, Models).

    On step s the engine runs every phase with ``s % every == 0``, in order: ``loss(batch, s)``
    returns a dict whose ``loss`` is backpropagated into the parameters of ``group`` only, whose
    optimiser then steps; the other keys are logged. ``lazy`` marks a regulariser evaluated only
    every ``every`` steps (StyleGAN2's lazy regularisation, Karras et al. 2020, Sec. 3.1 and
    App. B): its loss is multiplied by ``every``, and the optimiser of its group takes the
    learning rate lr * c and betas beta ** c with c = every / (every + 1). ``start`` and ``stop``
    bound the steps a phase runs on, start <= s < stop (``stop`` None: to the end), so a schedule
    can change groups at a step (two-step training, Zou §6.3.4). ``name`` labels the phase's
    logged loss (``loss`` for the phase named ``model``, ``loss_<name>`` otherwise)."""

    group: str
    loss: Callable[[dict, int], dict]
    every: int = 1
    lazy: bool = False
    name: str = ""
    start: int = 0
    stop: int | None = None

    def __post_init__(self):
        if self.every < 1:
            raise ConfigError(f"a training phase's period must be >= 1, got {self.every}")
        if self.start < 0 or (self.stop is not None and self.stop <= self.start):
            raise ConfigError(f"a training phase runs on steps start <= s < stop, got start {self.start}, stop {self.stop}")
        if not self.name:
            object.__setattr__(self, "name", self.group)

    def due(self, step: int) -> bool:
        """Whether the phase runs on step ``step``."""
        return self.start <= step and (self.stop is None or step < self.stop) and step % self.every == 0

    @property
    def log_key(self) -> str:
        return "loss" if self.name == "model" else f"loss_{self.name}"


class GenerativeModel(nn.Module):
    """Base class: holds the config; the defaults describe a model with one loss and one optimiser."""

    config_class: type = ModelConfig
    model_name: str = ""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def loss(self, batch: dict, step: int = 0) -> dict:
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        """The training schedule; default: ``loss`` on the ``model`` group every step."""
        return [Phase("model", self.loss)]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameter groups, one optimiser each (named in ``train.optim``)."""
        return {"model": [p for p in self.parameters() if p.requires_grad]}

    def ema_modules(self) -> list[str]:
        """Names of the sub-modules whose parameters the engine's EMA averages ("" = the whole
        model); the others are copied as they are. A GAN averages its generator only."""
        return [""]

    def fit_data(self, batch: dict) -> dict:
        """Fit statistics from a first batch of training data before step 0 (stored as buffers)
        and return them as numbers for meta.json; default: nothing to fit."""
        return {}

    def config_dict(self) -> dict:
        return {**to_dict(self.config), "name": self.model_name}


# Modules that register families when imported. They are found by name (a plugin list), so
# that this module, which every family imports, imports none of them.
FAMILIES = ("mien.models.vae", "mien.models.arvae", "mien.models.vqvae", "mien.models.klae", "mien.models.diffusion",
            "mien.models.expr4d", "mien.models.stylegan", "mien.models.stylegan.encoder", "mien.models.semisup",
            "mien.evaluator", "mien.diffusion.noisy_classifier", "mien.models.mesh", "mien.models.mesh_dvae")


def families() -> dict[str, tuple[type, type]]:
    """Every registered family: name -> (config class, model class)."""
    for module in FAMILIES:
        importlib.import_module(module)
    return MODELS


def build_model(section: dict, data=None) -> GenerativeModel:
    """Build a model from the ``model:`` section of a config (``name`` plus its fields), completed
    by the facts of the training data set ``data`` when given (:meth:`ModelConfig.from_data`)."""
    families()
    section = dict(section or {})
    name = section.get("name")
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    config_class, model_class = MODELS[name]
    config = config_class.from_data(section, data) if data is not None else from_dict(config_class, section, "model.")
    return model_class(config)


def class_index(label, names, count: int | None = None, what: str = "class") -> int:
    """The index of a class given by name (one of ``names``) or by index (0 .. count - 1, count
    defaulting to the number of names), else a ConfigError listing the choices."""
    count = len(names) if count is None else count
    if isinstance(label, str) and label in names:
        return list(names).index(label)
    try:
        i = int(label)
    except (TypeError, ValueError):
        i = -1
    if isinstance(label, float) and label != i:
        i = -1
    if not 0 <= i < count:
        raise ConfigError(f"unknown {what} {label!r}; choose one of {', '.join(names) or range(count)}")
    return i


def batch_labels(config, batch: dict) -> torch.Tensor | None:
    """The class indices of ``config.condition`` in a batch (``label`` for expression, else the
    factor), checked to lie in 0 .. num_classes - 1; None for an unconditional config."""
    if not getattr(config, "condition", None):
        return None
    if config.condition == "expression" and "label" in batch:
        y = batch["label"]
    elif "factors" in batch and config.condition in batch["factors"]:
        y = batch["factors"][config.condition]
    else:
        raise ConfigError(f"the data has no factor {config.condition!r} to condition on")
    y = torch.as_tensor(y).long()
    if y.min() < 0 or y.max() >= config.num_classes:
        raise ConfigError(f"labels of {config.condition!r} must lie in 0..{config.num_classes - 1}")
    return y


def condition_labels(config, cond, n: int, device=None, what: str = "this model") -> torch.Tensor | None:
    """Label indices for n samples of a model conditioned on ``config.condition``: from a class name
    or index (one for all), a list of them, or a tensor; None stays None."""
    if cond is None:
        return None
    if not getattr(config, "condition", None):
        raise ConfigError(f"{what} is unconditional; sample it without a label")
    if isinstance(cond, (str, int)):
        cond = [cond] * n
    if torch.is_tensor(cond):
        return cond.long().to(device)
    return torch.tensor([class_index(c, config.class_names, config.num_classes) for c in cond], device=device)


def images_of(batch: dict) -> torch.Tensor:
    """The image tensor of a batch, with a clear error when the data has none."""
    if "image" not in batch:
        raise ConfigError("this model trains on images but the data has no 'image' key")
    return batch["image"]
