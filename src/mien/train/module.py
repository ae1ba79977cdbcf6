"""The one Lightning module that trains any mien model (design.md, Models).

The schedule is the model's :meth:`~mien.models.base.GenerativeModel.phases`. Glossary:

    s       the engine's step, one per batch (saved with the training state)
    phase   (group, loss function, period k, lazy flag, steps [start, stop)); due on step s when
            s % k == 0 and start <= s < stop
    group   a named list of parameters with its own Adam optimiser (``train.optim.<group>``)

Each step:

0. before step 0 of a new run: the model's ``fit_data`` on the first batch (statistics such as
   a codebook initialisation or a latent scale, stored as buffers and recorded in meta.json);
1. seed the random generator from (seed, s, rank), so a resumed run draws what an uninterrupted
   one would;
2. for each due phase, in order: compute its loss on the batch (later phases see the weights
   earlier ones updated), check it is finite (a non-finite loss stops the run before that phase
   changes any weight), backpropagate it (times k if lazy) into its group's parameters only,
   clip, and step the group's optimiser at lr(s) = lr * warmup(s) * schedule(s) (``lr_factor``);
3. update the EMA of the model's ``ema_modules``.

Before weights are kept (every ``save_every`` steps and at the end), :meth:`check_kept_weights`
checks that they are finite and that every phase's loss on the last batch, recomputed with them,
is finite: the weights an update produced are never kept unchecked. On resume the optimisers
take the current ``train`` settings (lr, betas, weight decay), not those stored in the state.

Optimisers of a group with a lazy phase of period k take lr * c and betas beta ** c,
c = k / (k + 1) (Karras et al. 2020, App. B). Manual optimisation throughout: Lightning's own
step count (one per optimiser step) is not used.
"""

from __future__ import annotations

import copy
import math

import lightning as L
import torch

from mien.errors import ConfigError, MienError
from mien.models.base import GenerativeModel, Phase
from mien.train.config import TrainConfig


class NonFiniteLoss(MienError):
    """Raised when a loss term becomes NaN or infinite."""


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 9_176 + rank * 7_919) % (2**63 - 1)


def seed_device(seed: int, device: torch.device) -> None:
    """Seed the CPU generator and that of ``device`` only: ``torch.manual_seed`` also seeds every
    CUDA, XPU and MTIA device, about 1.7 ms a step on a machine without any."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def lazy_ratio(phases: list[Phase], group: str) -> float:
    """c = k / (k + 1) for the lazy phase of period k on ``group`` (1 when there is none)."""
    periods = {p.every for p in phases if p.group == group and p.lazy}
    if len(periods) > 1:
        raise ConfigError(f"group {group!r} has lazy phases of periods {sorted(periods)}; use one period per group")
    return next((k / (k + 1) for k in periods), 1.0)


class TrainingModule(L.LightningModule):
    def __init__(self, model: GenerativeModel, cfg: TrainConfig, out_dir: str = ""):
        super().__init__()
        self.model, self.cfg, self.out_dir = model, cfg, out_dir
        self.automatic_optimization = False
        self.group_params = model.param_groups()
        self.groups = list(self.group_params)
        self.phases = model.phases()
        unknown = sorted({p.group for p in self.phases} - set(self.groups))
        unknown += sorted(set(cfg.optim) - set(self.groups))
        if unknown:
            raise ConfigError(f"parameter group {unknown[0]!r} is not one of {self.model.model_name}'s groups "
                              f"({', '.join(self.groups)}); fix train.optim")
        self.step = 0
        self.saved_step = None  # the step of the last kept checkpoint (set by the run's saver)
        self.last_batch = None
        self.statistics = None  # what fit_data fitted before step 0 (recorded in meta.json)
        self.reduce_per_phase = False  # set under DDP with several phases (on_train_start)
        self.ema = None
        if cfg.ema_decay > 0 or cfg.ema_kimg > 0:
            self.ema = copy.deepcopy(model).requires_grad_(False)
            prefixes = model.ema_modules()
            self.ema_names = [n for n, _ in model.named_parameters()
                              if any(p == "" or n == p or n.startswith(p + ".") for p in prefixes)]

    # --- optimisers ------------------------------------------------------------------------------
    def group_settings(self, group: str) -> dict:
        """Adam settings of ``group`` after the lazy-regularisation correction."""
        opt = self.cfg.group_optim(group)
        c = lazy_ratio(self.phases, group)
        return {**opt, "lr": opt["lr"] * c, "betas": tuple(b ** c for b in opt["betas"])}

    def configure_optimizers(self):
        settings = {g: self.group_settings(g) for g in self.groups}
        self.base_lr = {g: s["lr"] for g, s in settings.items()}
        adam = torch.optim.AdamW if self.cfg.optimizer == "adamw" else torch.optim.Adam
        return [adam(self.group_params[g], **settings[g]) for g in self.groups]

    def on_train_start(self) -> None:
        """Apply the current lr, betas and weight decay of every group (a resumed run's optimiser
        state carries those of the run that saved it). Under DDP with several phases, turn off
        DDP's own gradient reduction (it expects one backward through every parameter per step)
        and average each phase's gradients over the processes after its backward
        (:func:`average_gradients`), with rank 0's buffers broadcast before each step as DDP does
        (:func:`broadcast_buffers`)."""
        self.reduce_per_phase = len(self.phases) > 1 and hasattr(self.trainer.strategy.model, "require_backward_grad_sync")
        for group, opt in self._optimisers().items():
            settings = self.group_settings(group)
            for g in opt.optimizer.param_groups:
                g.update(lr=settings["lr"] * self.lr_factor(self.step), betas=settings["betas"],
                         weight_decay=settings["weight_decay"])

    def _optimisers(self) -> dict:
        opts = self.optimizers()
        return dict(zip(self.groups, opts if isinstance(opts, list) else [opts]))

    def lr_factor(self, step: int) -> float:
        """min(1, (s + 1) / warmup) times 1 (constant) or 0.5 (1 + cos(pi s / max_steps)) (cosine)."""
        warm = min(1.0, (step + 1) / max(1, self.cfg.warmup_steps))
        if self.cfg.lr_schedule == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, step / self.cfg.max_steps)))
        return warm

    # --- the step ------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        step = self.step
        self.last_batch = batch
        seed_device(step_seed(self.cfg.seed, step, self.global_rank), self.device)
        optimisers, logged = self._optimisers(), {}
        if self.reduce_per_phase:  # what DDP.no_sync() sets; Lightning sets it back after each step
            self.trainer.strategy.model.require_backward_grad_sync = False
            broadcast_buffers(self.model)
        for phase in self.phases:
            if not phase.due(step):
                continue
            terms = phase.loss(batch, step)
            self._check_finite(terms, phase, step)
            opt, params = optimisers[phase.group], self.group_params[phase.group]
            for g in opt.optimizer.param_groups:
                g["lr"] = self.base_lr[phase.group] * self.lr_factor(step)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(terms["loss"] * (phase.every if phase.lazy else 1), inputs=params)
            if self.reduce_per_phase:
                average_gradients(params)
            if self.cfg.grad_clip > 0:
                self.clip_gradients(opt, gradient_clip_val=self.cfg.grad_clip, gradient_clip_algorithm="norm")
            opt.step()
            logged.update({(phase.log_key if k == "loss" else k): v.detach() for k, v in terms.items()
                           if torch.is_tensor(v)})
        if self.ema is not None:
            self._update_ema(self.ema_decay(step, _batch_size(batch) * self.trainer.world_size))
        self.step = step + 1
        self._log(logged, batch, step)
        if self.step >= self.cfg.max_steps:
            self.trainer.should_stop = True
        return None

    def _check_finite(self, terms: dict, phase: Phase, step: int) -> None:
        bad = [k for k, v in terms.items() if torch.is_tensor(v) and not torch.isfinite(v).all()]
        if bad:
            value = terms[bad[0]].float().mean().item()
            raise NonFiniteLoss(self.non_finite(f"{bad[0]} of phase {phase.name} became {value} at step {step}"))

    def non_finite(self, what: str) -> str:
        """The message of a stop by the NaN guard: what happened, what was kept, what to do."""
        where = self.out_dir or "the run folder"
        if self.saved_step is None:
            return (f"{what}; no checkpoint was saved before it (the first is written at step "
                    f"{self.cfg.save_every or self.cfg.max_steps}); lower train.lr or set train.grad_clip and "
                    "start again (delete the run folder or choose another --out)")
        return (f"{what}; the last good checkpoint (step {self.saved_step}) in {where} is kept; lower train.lr "
                "or set train.grad_clip and resume with --resume (the new train settings apply on resume)")

    def check_kept_weights(self) -> None:
        """Raise :class:`NonFiniteLoss` unless the current weights are finite and give finite losses
        on the last batch (each phase recomputed in eval mode; random state and buffers restored)."""
        bad = next((n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:
            raise NonFiniteLoss(self.non_finite(f"weight {bad} became non-finite by step {self.step - 1}"))
        if self.last_batch is None:
            return
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(step_seed(self.cfg.seed, self.step, self.global_rank))
                for phase in self.phases:
                    terms = phase.loss(self.last_batch, self.step)
                    bad = [k for k, v in terms.items() if torch.is_tensor(v) and not torch.isfinite(v).all()]
                    if bad:
                        raise NonFiniteLoss(self.non_finite(
                            f"the weights after step {self.step - 1} give a non-finite {bad[0]} "
                            f"(phase {phase.name}); they were not kept"))
        finally:
            self.model.train(training)
            for n, b in self.model.named_buffers():
                b.copy_(buffers[n])

    def _log(self, logged: dict, batch, step: int) -> None:
        """Log the losses on the steps whose values are written (Lightning's logging steps, the
        saving steps, the last step), or every step when a progress bar shows them; the other
        terms every ``log_every`` steps. Lightning's ``log`` costs about 1.5 ms a call."""
        if not (self._losses_read(step) or self.trainer.progress_bar_callback is not None):
            return
        n = _batch_size(batch)
        losses = {k: v.float().mean() for k, v in logged.items() if k == "loss" or k.startswith("loss_")}
        self.log_dict(losses, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        if step % max(1, self.cfg.log_every) == 0 or step + 1 == self.cfg.max_steps:
            rest = {k: v.float().mean() for k, v in logged.items() if k not in losses}
            self.log_dict(rest, prog_bar=False, on_step=True, on_epoch=False, batch_size=n)

    def ema_decay(self, step: int, batch: int) -> float:
        """The EMA decay of step s: min(ema_decay, (1 + s) / (10 + s)); with ``ema_kimg``, StyleGAN2's
        0.5 ** (batch / h), h = 1000 ema_kimg images, or min(h, ema_rampup * images seen) with a ramp-up."""
        c = self.cfg
        if c.ema_kimg <= 0:
            return min(c.ema_decay, (1 + step) / (10 + step))
        half_life = c.ema_kimg * 1000
        if c.ema_rampup > 0:
            half_life = min(half_life, (step + 1) * batch * c.ema_rampup)
        return 0.5 ** (batch / max(half_life, 1e-8))

    def _losses_read(self, step: int) -> bool:
        """Whether the losses of ``step`` reach metrics.csv, meta.json or the NaN guard's caller."""
        connector = getattr(self.trainer, "_logger_connector", None)
        written = getattr(connector, "should_update_logs", True)
        saved = self.cfg.save_every and (step + 1) % self.cfg.save_every == 0
        return bool(written or saved or step + 1 >= self.cfg.max_steps or step % max(1, self.cfg.log_every) == 0)

    @torch.no_grad()
    def _update_ema(self, decay: float):
        """ema <- decay * ema + (1 - decay) * weights for the parameters of ``ema_modules``; the
        other parameters and all buffers (e.g. norm statistics) are copied. The engine warms the
        decay up as min(ema_decay, (1 + step) / (10 + step)), so that short runs are not dominated
        by the initial weights (:meth:`ema_decay`)."""
        live, ema = dict(self.model.named_parameters()), dict(self.ema.named_parameters())
        averaged = set(self.ema_names)
        torch._foreach_lerp_([ema[n] for n in self.ema_names], [live[n].detach() for n in self.ema_names], 1 - decay)
        for n, p in ema.items():
            if n not in averaged:
                p.copy_(live[n])
        for b_ema, b in zip(self.ema.buffers(), self.model.buffers()):
            b_ema.copy_(b)

    def inference_model(self) -> GenerativeModel:
        """The weights to ship: the EMA copy when EMA is on."""
        return self.ema if self.ema is not None else self.model

    # --- resumable state -------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx):
        """Before step 0 of a new run the model fits its data statistics (``fit_data``) on the
        first batch, with the random state step 0 will have; a resumed run past max_steps stops."""
        if self.step >= self.cfg.max_steps:
            self.trainer.should_stop = True
            return -1
        if self.statistics is None:
            torch.manual_seed(step_seed(self.cfg.seed, 0, self.global_rank))
            with torch.no_grad():
                self.statistics = self.model.fit_data(batch)
        return None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["mien"] = {"step": self.step, "statistics": self.statistics, "world_size": self.trainer.world_size}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the step; a state saved by another number of processes is refused (each process
        draws its own share of the global batch, so the run would not continue as it began)."""
        state = checkpoint["mien"]
        saved, now = int(state.get("world_size", 1)), self.trainer.world_size
        if saved != now:
            raise ConfigError(f"the run in {self.out_dir or 'the run folder'} was trained on {saved} process(es) and "
                              f"is being resumed on {now}; resume with the same --devices and --num-nodes "
                              f"({saved} processes in all), or start a new run with train.init_from=FOLDER")
        self.step, self.statistics, self.saved_step = int(state["step"]), state["statistics"], int(state["step"])


def _batch_size(batch) -> int:
    for v in batch.values():
        if torch.is_tensor(v):
            return len(v)
    return 1


def average_gradients(params) -> None:
    """Replace the gradients of ``params`` by their mean over the processes (one all-reduce of
    the flattened gradients; DDP's reduction, for one phase's parameters). Parameters without a
    gradient are skipped: a phase reaches the same parameters on every process."""
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for g, mean in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(mean.view_as(g))


def broadcast_buffers(model) -> None:
    """Rank 0's buffers (running statistics, path-length mean) on every process, as DDP's
    ``broadcast_buffers`` does before each forward pass."""
    import torch.distributed as dist

    for b in model.buffers():
        dist.broadcast(b, 0)
