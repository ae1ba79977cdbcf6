"""The one Lightning module that trains any mien model (design.md, Models).

Manual optimisation: each parameter group of the model has its own optimiser and is stepped on
its own loss (``loss`` for ``model``, ``loss_<group>`` otherwise), which gives alternating
optimisation (FactorVAE's discriminator, later GANs) without a second training loop. Every step
seeds the random generator from (seed, step, rank), so a resumed run draws the same noise as an
uninterrupted one. A non-finite loss stops the run before any weight changes.
"""

from __future__ import annotations

import copy

import lightning as L
import torch

from mien.errors import MienError
from mien.models.base import GenerativeModel
from mien.train.config import TrainConfig


class NonFiniteLoss(MienError):
    """Raised when a loss term becomes NaN or infinite."""


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 9_176 + rank * 7_919) % (2**63 - 1)


class TrainingModule(L.LightningModule):
    def __init__(self, model: GenerativeModel, cfg: TrainConfig, out_dir: str = ""):
        super().__init__()
        self.model, self.cfg, self.out_dir = model, cfg, out_dir
        self.automatic_optimization = False
        self.group_params = model.param_groups()
        self.groups = list(self.group_params)
        self.ema = None
        if cfg.ema_decay > 0:
            self.ema = copy.deepcopy(model).requires_grad_(False)

    def configure_optimizers(self):
        optimisers, schedulers = [], []
        for name in self.groups:
            lr = float(self.cfg.group_lr.get(name, self.cfg.lr))
            opt = torch.optim.Adam(self.group_params[name], lr=lr, betas=tuple(self.cfg.betas), weight_decay=self.cfg.weight_decay)
            optimisers.append(opt)
            warm = max(1, self.cfg.warmup_steps)
            schedulers.append(torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm)))
        return optimisers, schedulers

    def training_step(self, batch, batch_idx):
        step = self.global_step // max(1, len(self.groups))  # Lightning counts one step per optimiser
        torch.manual_seed(step_seed(self.cfg.seed, step, self.global_rank))
        self.model.train_step = step
        terms = self.model.loss(batch)
        bad = [k for k, v in terms.items() if torch.is_tensor(v) and not torch.isfinite(v).all()]
        if bad:
            raise NonFiniteLoss(
                f"{bad[0]} became {terms[bad[0]].item()} at step {step}; the last good checkpoint in "
                f"{self.out_dir or 'the run folder'} is kept; lower train.lr or set train.grad_clip and resume")
        optimisers = self.optimizers()
        optimisers = optimisers if isinstance(optimisers, list) else [optimisers]
        for opt in optimisers:
            opt.zero_grad(set_to_none=True)
        for i, (name, opt) in enumerate(zip(self.groups, optimisers)):
            loss = terms["loss" if name == "model" else f"loss_{name}"]
            if len(self.groups) == 1:
                self.manual_backward(loss)
            else:
                self.manual_backward(loss, inputs=self.group_params[name], retain_graph=i < len(self.groups) - 1)
        for opt in optimisers:
            if self.cfg.grad_clip > 0:
                self.clip_gradients(opt, gradient_clip_val=self.cfg.grad_clip, gradient_clip_algorithm="norm")
            opt.step()
        schedulers = self.lr_schedulers()
        for sched in schedulers if isinstance(schedulers, list) else [schedulers]:
            sched.step()
        if self.ema is not None:
            self._update_ema(min(self.cfg.ema_decay, (1 + step) / (10 + step)))
        n = _batch_size(batch)
        self.log("loss", terms["loss"].detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        if step % max(1, self.cfg.log_every) == 0 or step + 1 == self.cfg.max_steps:
            logged = {k: v.detach().float().mean() for k, v in terms.items() if torch.is_tensor(v) and k != "loss"}
            self.log_dict(logged, prog_bar=False, on_step=True, on_epoch=False, batch_size=n)
        return None

    @torch.no_grad()
    def _update_ema(self, decay: float):
        """ema <- decay * ema + (1 - decay) * weights; buffers (e.g. norm statistics) are copied.
        The engine warms the decay up as min(ema_decay, (1 + step) / (10 + step)), so that short
        runs are not dominated by the initial weights."""
        ema_p = list(self.ema.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in self.model.parameters()], 1 - decay)
        for b_ema, b in zip(self.ema.buffers(), self.model.buffers()):
            b_ema.copy_(b)

    def inference_model(self) -> GenerativeModel:
        """The weights to ship: the EMA copy when EMA is on."""
        return self.ema if self.ema is not None else self.model


def _batch_size(batch) -> int:
    for v in batch.values():
        if torch.is_tensor(v):
            return len(v)
    return 1


def total_steps(max_steps: int, groups: int) -> int:
    """Lightning's global step advances once per optimiser step."""
    return max_steps * groups if max_steps > 0 else -1
