"""The run config: ``model`` (validated by the chosen family's config), ``data`` and ``train``."""

from __future__ import annotations

from dataclasses import dataclass, field

from mien.config import from_dict, load_yaml, merge, parse_overrides, to_dict
from mien.errors import ConfigError


@dataclass
class DataConfig:
    """Where batches come from: the world on the fly (default) or a folder (``path``)."""

    source: str = "world"
    path: str | None = None
    size: int = 64
    n: int = 20000
    seed: int = 0
    design: str = "iid"
    fixed: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    n_identities: int | None = None
    frames: list[int] = field(default_factory=lambda: [35, 45])  # sequence lengths (source: sequences)
    batch_size: int = 64
    num_workers: int = 0


@dataclass
class TrainConfig:
    """Optimisation and the Lightning trainer flags (devices, strategy, precision pass through)."""

    max_steps: int = 1000
    lr: float = 2e-4
    group_lr: dict = field(default_factory=dict)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 0.0
    ema_decay: float = 0.0
    seed: int = 0
    log_every: int = 10
    save_every: int = 200
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"


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
    if cfg.data.source not in ("world", "folder", "sequences"):
        raise ConfigError(f"data.source {cfg.data.source!r} is not known; use world, sequences or folder (data.path=DIR)")
    if cfg.data.source == "folder" and not cfg.data.path:
        raise ConfigError("data.source=folder needs data.path=DIR")
    cfg.model.setdefault("image_size", cfg.data.size)
    if cfg.model["image_size"] != cfg.data.size:
        raise ConfigError(f"model.image_size {cfg.model['image_size']} differs from data.size {cfg.data.size}")
    return cfg


def load_run_config(path, overrides: list[str] | None = None) -> RunConfig:
    return run_config(merge(load_yaml(path), parse_overrides(overrides or [])))
