"""The run config: ``model`` (validated by the chosen family's config), ``data`` and ``train``."""

from __future__ import annotations

from dataclasses import dataclass, field

from mien.config import (NonNegative, NonNegativeInt, Positive, PositiveInt, UnitOpen, from_dict, load_yaml, merge,
                         parse_overrides, to_dict)
from mien.data.source import DataConfig
from mien.errors import ConfigError


@dataclass
class GroupOptim:
    """Adam settings of one parameter group; a field left out takes the ``train`` default."""

    lr: Positive | None = None
    betas: list[UnitOpen] | None = None
    weight_decay: NonNegative | None = None


@dataclass
class TrainConfig:
    """Optimisation and the Lightning trainer flags (devices, strategy, precision pass through).

    ``optimizer`` is ``adam`` or ``adamw`` (decoupled weight decay, Loshchilov & Hutter 2019);
    ``lr``, ``betas`` and ``weight_decay`` are its defaults for every parameter group, and
    ``optim`` overrides them per group, e.g. ``optim: {disc: {lr: 1.0e-4, betas: [0.5, 0.9]}}``
    (the groups are the model's ``param_groups``). The learning rate of step s is
    lr * min(1, (s + 1) / warmup_steps) * f(s), f = 1 (``lr_schedule: constant``) or
    0.5 (1 + cos(pi s / max_steps)) (``cosine``). ``ema_decay`` > 0 keeps an exponential moving
    average of the model's ``ema_modules`` (the weights then shipped); ``ema_kimg`` > 0 sets it instead
    by StyleGAN2's half-life in thousands of images, decay = 0.5 ** (global batch / (1000 ema_kimg)),
    ramped up as the half-life min(ema_kimg, ema_rampup * images seen so far) when ema_rampup > 0
    (Karras et al. 2020, official code). ``init_from`` names a
    checkpoint folder whose weights start a new run (those whose names and shapes match)."""

    max_steps: PositiveInt = 1000
    optimizer: str = "adam"
    lr_schedule: str = "constant"
    init_from: str | None = None
    lr: Positive = 2e-4
    betas: list[UnitOpen] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: NonNegative = 0.0
    optim: dict = field(default_factory=dict)
    warmup_steps: NonNegativeInt = 0
    grad_clip: NonNegative = 0.0
    ema_decay: UnitOpen = 0.0
    ema_kimg: NonNegative = 0.0
    ema_rampup: NonNegative = 0.0
    seed: NonNegativeInt = 0
    log_every: PositiveInt = 10
    save_every: NonNegativeInt = 200
    accelerator: str = "cpu"
    devices: PositiveInt | str = 1
    strategy: str = "auto"
    num_nodes: PositiveInt = 1
    precision: str = "32-true"

    def __post_init__(self):
        self.optim = {str(g): v if isinstance(v, GroupOptim) else from_dict(GroupOptim, v, f"train.optim.{g}.")
                      for g, v in (self.optim or {}).items()}
        for where, opt in [("train", self), *((f"train.optim.{g}", o) for g, o in self.optim.items())]:
            if opt.betas is not None and len(opt.betas) != 2:
                raise ConfigError(f"{where}.betas must be two numbers in [0, 1), got {opt.betas}")
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"train.optimizer {self.optimizer!r} is unknown; choose adam or adamw")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"train.lr_schedule {self.lr_schedule!r} is unknown; choose constant or cosine")

    def group_optim(self, group: str) -> dict:
        """lr, betas and weight_decay of ``group``'s optimiser: its ``optim`` entry over the defaults."""
        own = self.optim.get(group, GroupOptim())
        return {"lr": own.lr if own.lr is not None else self.lr,
                "betas": tuple(own.betas if own.betas is not None else self.betas),
                "weight_decay": own.weight_decay if own.weight_decay is not None else self.weight_decay}


@dataclass
class RunConfig:
    model: dict
    data: DataConfig
    train: TrainConfig

    def to_dict(self) -> dict:
        return {"model": dict(self.model), "data": to_dict(self.data), "train": to_dict(self.train)}


def run_config(data: dict) -> RunConfig:
    """Validate a whole config dict (model fields are checked by building the model later)."""
    unknown = sorted(set(data) - {"model", "data", "train"})
    if unknown:
        raise ConfigError(f"unknown section {unknown[0]!r}; a config has the sections model, data and train")
    if not isinstance(data.get("model"), dict) or "name" not in data["model"]:
        raise ConfigError("the config needs a model section with a name, e.g. model: {name: vae}")
    section = dict(data.get("data") or {})
    if section.get("path") and "source" not in section:
        section["source"] = "folder"
    cfg = RunConfig(dict(data["model"]), from_dict(DataConfig, section, "data."),
                    from_dict(TrainConfig, data.get("train"), "train."))
    if cfg.data.source not in ("world", "folder", "sequences", "meshes", "mesh_sequences"):
        raise ConfigError(f"data.source {cfg.data.source!r} is not known; use world, sequences, meshes, "
                          "mesh_sequences or folder (data.path=DIR)")
    if cfg.data.source == "folder" and not cfg.data.path:
        raise ConfigError("data.source=folder needs data.path=DIR")
    return cfg


def load_run_config(path, overrides: list[str] | None = None) -> RunConfig:
    return run_config(merge(load_yaml(path), parse_overrides(overrides or [])))
