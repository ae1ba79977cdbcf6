"""``fit``: train any model from a run config with Lightning, writing a checkpoint folder.

The run folder holds the checkpoint files (model.safetensors, config.yaml, meta.json),
``metrics.csv`` and ``state/last.ckpt`` (Lightning's resumable training state). It is updated
every ``train.save_every`` steps and at the end; an interrupted or failed run keeps the last
good checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import signal
import time
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.loggers import CSVLogger

from mien.data.source import make_dataset
from mien.errors import ConfigError, MienError, OutputError
from mien.io import atomic_write_text, ensure_writable_dir, remove_stale_temps
from mien.models import checkpoint
from mien.models.base import build_model
from mien.train.config import RunConfig
from mien.train.data import ResumableLoader, StepBatchSampler
from mien.train.module import TrainingModule
from mien.train.state import StateIO


class TrainingError(MienError):
    """A run ended before reaching train.max_steps."""


class ModelFolder(Callback):
    """Every ``every`` steps and at the end: the checkpoint files of the inference weights and
    Lightning's resumable state ``state/last.ckpt`` (atomic, through :class:`StateIO`), once the
    NaN guard has checked the weights (:meth:`TrainingModule.check_kept_weights`)."""

    def __init__(self, out: Path, config: dict, meta: dict, every: int):
        self.out, self.config, self.meta, self.every = out, config, meta, every
        self.start = time.time()

    def _save(self, trainer, module: TrainingModule):
        module.check_kept_weights()
        trainer.save_checkpoint(self.out / "state" / "last.ckpt", weights_only=False)
        module.saved_step = module.step
        if trainer.global_rank != 0:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        meta = {**self.meta, "steps": module.step, "train_seconds": round(time.time() - self.start, 1),
                "metrics": metrics, "statistics": module.statistics}
        checkpoint.save(module.inference_model(), self.out, self.config, meta)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.every and module.step % self.every == 0 and module.step < module.cfg.max_steps:
            self._save(trainer, module)

    def on_train_end(self, trainer, module):
        self._save(trainer, module)  # a finished run can be extended with a larger max_steps


class EpochBudget(Callback):
    """Lightning's epoch limit, counted from the epochs its restored state has already counted:
    a run stopped by the engine counts its last epoch as finished and a resume from the end of an
    epoch counts one more, so a fixed limit ran out after a few resumes (at an epoch boundary
    resumed twice, a 20-step run stopped at step 17)."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_start(self, trainer, module):
        trainer.fit_loop.max_epochs = trainer.fit_loop.epoch_progress.current.processed + self.epochs


class _Data(L.LightningDataModule):
    def __init__(self, cfg: RunConfig, dataset=None, progress: bool = True):
        super().__init__()
        self.cfg = cfg
        self.dataset = dataset if dataset is not None else make_dataset(cfg.data, progress)

    def train_dataloader(self):
        t = self.trainer
        sampler = StepBatchSampler(len(self.dataset), self.cfg.data.batch_size, self.cfg.train.seed,
                                   t.global_rank if t else 0, t.world_size if t else 1)
        return ResumableLoader(self.dataset, sampler, self.cfg.data.num_workers)


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _prepend_rows(path: Path, earlier: list[dict]) -> None:
    """Lightning's CSV logger starts a new file on resume: keep the rows logged before it."""
    rows = _read_rows(path)
    first = min((int(r["step"]) for r in rows if r.get("step")), default=None)
    kept = [r for r in earlier if first is None or (r.get("step") and int(r["step"]) < first)]
    fields = list(dict.fromkeys([k for r in kept + rows for k in r]))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept + rows)
    atomic_write_text(path, text.getvalue())


def start_from(model, folder) -> list[str]:
    """Copy into ``model`` the weights of checkpoint ``folder`` whose names and shapes match
    (a second training stage, or a new head on a trained trunk); returns the names left as built."""
    theirs = checkpoint.read_weights(folder)
    ours = model.state_dict()
    same = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    if not same:
        raise ConfigError(f"no weight of {folder} fits this model; train.init_from needs a checkpoint "
                          "of the same architecture")
    model.load_state_dict(same, strict=False)
    return sorted(set(ours) - set(same))


def _epochs(cfg: RunConfig, n: int) -> int:
    """Enough epochs for max_steps (which ends the run first), whatever the number of processes."""
    world = cfg.train.num_nodes * (cfg.train.devices if isinstance(cfg.train.devices, int) else 64)
    per_epoch = max(1, n // (cfg.data.batch_size * world))
    return -(-cfg.train.max_steps // per_epoch) + 1


def fit(cfg: RunConfig, out_dir, resume: bool = False, progress: bool = True, dataset=None) -> Path:
    """Train ``cfg`` into ``out_dir``; ``resume`` continues from ``out_dir/state/last.ckpt``.
    ``dataset`` (any map-style data set of sample dicts) replaces the one ``cfg.data`` describes."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, not a folder; choose another --out")
    state = out / "state" / "last.ckpt"
    if resume and not state.is_file():
        raise ConfigError(f"nothing to resume in {out} (no state/last.ckpt); start the run without --resume")
    if not resume and state.is_file():
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    check_trainer_flags(cfg.train)
    if resume:  # temp files of saves a kill interrupted (no save of this run is under way yet)
        for folder in (out, out / "state"):
            remove_stale_temps(folder)
    created = not out.exists()
    ensure_writable_dir(out)
    try:
        return _train(cfg, out, resume, progress, dataset)
    except BaseException:
        if created:
            _remove_if_unused(out)
        raise


def check_trainer_flags(train) -> None:
    """Refuse an unknown or unavailable accelerator, devices, strategy or precision before any work
    (Lightning checks them when a Trainer is made)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    flags = {k: getattr(train, k) for k in ("accelerator", "devices", "strategy", "num_nodes", "precision")}
    _quiet_lightning()
    try:
        L.Trainer(**flags, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as e:
        shown = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in flags.items())
        raise ConfigError(f"Lightning refuses {shown}: {str(e).strip().splitlines()[0][:300]}") from None


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric"):  # keep the console to mien's own lines and the bar
        logging.getLogger(name).setLevel(logging.WARNING)


def _remove_if_unused(out: Path) -> None:
    """After a failed first run: remove the run folder if nothing of value is in it (empty folders
    and Lightning's hparams.yaml only); a folder with any other file is left as it is."""
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.name != "hparams.yaml"]
    if leftovers:
        return
    for p in sorted(out.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            p.unlink() if p.is_file() else p.rmdir()
    with contextlib.suppress(OSError):
        out.rmdir()


def _train(cfg: RunConfig, out: Path, resume: bool, progress: bool, dataset) -> Path:
    """The body of :func:`fit` once its checks have passed."""
    state = out / "state" / "last.ckpt"
    _quiet_lightning()
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    data = _Data(cfg, dataset, progress)
    model = build_model(cfg.model, data=data.dataset)
    as_built = start_from(model, cfg.train.init_from) if cfg.train.init_from and not resume else []
    module = TrainingModule(model, cfg.train, str(out))
    config = cfg.to_dict()
    config["model"] = model.config_dict()
    meta = {"model": model.model_name, "parameters": sum(p.numel() for p in model.parameters()),
            "data": {k: v for k, v in config["data"].items() if k in ("source", "path", "size", "n", "seed", "design")}}
    if cfg.train.init_from:
        meta["init_from"] = {"folder": str(cfg.train.init_from), "recipe": checkpoint.read_meta(cfg.train.init_from).get("recipe"),
                             "not_copied": as_built}
    epochs = _epochs(cfg, len(data.dataset))
    callbacks = [ModelFolder(out, config, meta, cfg.train.save_every), EpochBudget(epochs)]
    if progress:
        callbacks.append(RichProgressBar())
    # the engine stops itself at train.max_steps; Lightning's limit (it counts optimiser steps) is
    # an upper bound it never reaches, set so that Lightning resumes mid-epoch (iteration-based)
    trainer = L.Trainer(
        max_steps=cfg.train.max_steps * len(module.phases) + 1, max_epochs=epochs, accelerator=cfg.train.accelerator,
        devices=cfg.train.devices, strategy=cfg.train.strategy, num_nodes=cfg.train.num_nodes,
        precision=cfg.train.precision, logger=CSVLogger(out, name="", version=""), callbacks=callbacks,
        log_every_n_steps=cfg.train.log_every, enable_progress_bar=progress, enable_model_summary=False,
        enable_checkpointing=False, use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0,
        default_root_dir=out, plugins=[StateIO()])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*`training_step` returns `None`.*")
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")
        warnings.filterwarnings("ignore", ".*no pre-optimization state was saved.*")  # we save post-step state
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", r".*module\(s\) in eval mode.*")  # frozen parts (C_recon's DVAE)
        earlier = _read_rows(out / "metrics.csv") if resume else []
        _fit_or_interrupt(trainer, module, data, str(state) if resume else None)
    if earlier and trainer.global_rank == 0:
        _prepend_rows(out / "metrics.csv", earlier)
    if module.step < cfg.train.max_steps:
        raise TrainingError(f"training stopped at step {module.step} of train.max_steps={cfg.train.max_steps} "
                            f"(the data ran out: {len(data.dataset)} items); the checkpoint in {out} is that of step "
                            f"{module.saved_step}; resume with --resume")
    return out


def _fit_or_interrupt(trainer, module, data, ckpt_path) -> None:
    """``trainer.fit``, with Ctrl-C raised as KeyboardInterrupt again (Lightning turns it into
    ``sys.exit(1)`` and ignores SIGINT from then on)."""
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    except SystemExit:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise



