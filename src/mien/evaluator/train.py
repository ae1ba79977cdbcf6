"""The recipes that produce the shipped evaluators (``mien evaluator train``).

The image evaluator trains on world faces rendered on the fly (every step a fresh batch: all
poses, all intensities, all attributes) drawn from a pool of ``n_identities`` identities so that
the identity embedding can be trained with ArcFace (additive angular margin, Deng et al. 2019;
the ArcFace/CosFace identity networks of Pikoulis digest §4.1 and Haas digest §1.8). The
sequence classifier trains on world landmark sequences of 35-45 frames (Zou §3.6). Both use
:func:`fit_loop`: AdamW, linear warm-up then cosine decay, a rich progress bar.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from mien.evaluator.network import POSE_SCALE, Evaluator, EvaluatorConfig
from mien.evaluator.sequence import SequenceClassifier, SequenceClassifierConfig


def fit_loop(model: nn.Module, loss_fn: Callable[[dict], dict], batches: Iterator[dict], steps: int,
             lr: float = 2e-3, extra: list[nn.Parameter] | None = None, desc: str = "training",
             progress: bool = True) -> dict:
    """Minimise ``loss_fn(batch)['loss']`` for ``steps`` batches; returns the last terms (floats)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    params = list(model.parameters()) + list(extra or [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    model.train()
    terms = {}
    with Progress(TextColumn(desc), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task(desc, total=steps, info="")
        for _ in range(steps):
            out = loss_fn(next(batches))
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            terms = {k: v.item() for k, v in out.items()}
            bar.update(task, advance=1, info=" ".join(f"{k} {v:.3f}" for k, v in terms.items()))
    return terms


class ArcFace(nn.Module):
    """Additive angular margin softmax: logits s * cos(theta_y + m) for the true class and
    s * cos(theta_j) for the others, on unit embeddings and unit class weights."""

    def __init__(self, embed_dim: int, n_classes: int, s: float = 30.0, m: float = 0.3):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, embed_dim) * 0.01)
        self.s, self.m = s, m

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(embedding, dim=1), F.normalize(self.weight, dim=1)).clamp(-1 + 1e-7, 1 - 1e-7)
        theta = torch.acos(cos.gather(1, labels[:, None]))
        target = torch.cos((theta + self.m).clamp(max=math.pi))
        return F.cross_entropy(self.s * cos.scatter(1, labels[:, None], target), labels)


def evaluator_loss(model: Evaluator, arcface: ArcFace, batch: dict, sex_weight: float = 4.0) -> dict:
    """Sum of the head losses. Expression cross-entropy is weighted by min(1, intensity / 0.2) for
    non-neutral faces (a face at intensity 0 looks neutral whatever its label); the intensity
    target is 0 for neutral faces; the sex label, shown only by small shape and brow cues, has
    ``sex_weight`` times the weight of the other attributes."""
    out = model(batch["image"])
    f, label = batch["factors"], batch["label"]
    expressive = (label != 0).float()
    weight = 1 - expressive + expressive * (f["intensity"] / 0.2).clamp(max=1)
    terms = {
        "expression": (F.cross_entropy(out["expression"], label, reduction="none") * weight).mean(),
        "intensity": F.mse_loss(out["intensity"], f["intensity"] * expressive),
        "attributes": (F.binary_cross_entropy_with_logits(out["attributes"], batch["attributes"], reduction="none")
                       * torch.tensor([sex_weight, 1.0, 1.0, 1.0])).mean(),
        "pose": F.mse_loss(out["pose"], torch.stack([f["yaw"], f["pitch"], f["roll"]], 1) / torch.tensor(POSE_SCALE)),
        "landmarks": 20 * F.l1_loss(out["landmarks"], batch["landmarks2d"]),
        "identity": 0.2 * arcface(out["identity"], f["identity"]),
    }
    return {"loss": sum(terms.values()), **terms}


def _world_batches(size: int, batch_size: int, steps: int, seed: int, n_identities: int) -> Iterator[dict]:
    from mien.data.world import WorldDataset

    ds = WorldDataset(steps * batch_size, size, seed, n_identities=n_identities)
    for step in range(steps):
        yield ds.batch(range(step * batch_size, (step + 1) * batch_size))


def train_evaluator(size: int = 64, steps: int = 4000, batch_size: int = 64, seed: int = 0,
                    n_identities: int = 1000, lr: float = 2e-3, sex_weight: float = 4.0, init=None,
                    progress: bool = True, config: EvaluatorConfig | None = None) -> tuple[Evaluator, dict]:
    """Train an evaluator for ``size``-px faces, from scratch or from the weights folder ``init``
    (a second stage; the ArcFace class centres start afresh). Returns it (eval mode) and its
    meta: recipe (with the recipe of ``init``), world fingerprint, time and held-out scores."""
    from mien.evaluator.heldout import HELDOUT_SEED, evaluator_scores
    from mien.evaluator.weights import load_weights, world_fingerprint

    torch.manual_seed(seed)
    if init is not None:
        model = load_weights(init, "evaluator").requires_grad_(True)
        if model.config.size != size:
            from mien.errors import ConfigError

            raise ConfigError(f"{init} holds a {model.config.size}-px evaluator; pass --size {model.config.size}")
    else:
        model = Evaluator(config or EvaluatorConfig(size=size))
    arcface = ArcFace(model.config.embed_dim, n_identities)
    start = time.time()
    terms = fit_loop(model, lambda b: evaluator_loss(model, arcface, b, sex_weight),
                     _world_batches(size, batch_size, steps, seed, n_identities), steps, lr,
                     list(arcface.parameters()), f"evaluator {size}px", progress)
    model.eval()
    recipe = {"size": size, "steps": steps, "batch_size": batch_size, "seed": seed, "n_identities": n_identities,
              "lr": lr, "sex_weight": sex_weight}
    if init is not None:
        recipe["init"] = model.meta.get("recipe", str(init))
    meta = {"recipe": recipe,
            "world_fingerprint": world_fingerprint(size), "train_seconds": round(time.time() - start, 1),
            "final_loss": terms, "heldout_seed": HELDOUT_SEED, "heldout": evaluator_scores(model)}
    return model.requires_grad_(False), meta


def _sequence_batches(batch_size: int, steps: int, seed: int) -> Iterator[dict]:
    from mien.data.world import WorldSequenceDataset, pad_sequences

    ds = WorldSequenceDataset(steps * batch_size, seed, frames=(35, 45))
    for step in range(steps):
        yield pad_sequences([ds[i] for i in range(step * batch_size, (step + 1) * batch_size)])


def train_sequence_classifier(steps: int = 1500, batch_size: int = 64, seed: int = 0, lr: float = 3e-3,
                              progress: bool = True) -> tuple[SequenceClassifier, dict]:
    """Train the LSTM + linear sequence classifier (Zou §3.6) on fresh world sequences."""
    from mien.evaluator.heldout import HELDOUT_SEED, sequence_scores

    torch.manual_seed(seed)
    model = SequenceClassifier(SequenceClassifierConfig())
    sample = next(_sequence_batches(512, 1, seed + 1))["sequence"].flatten(2).reshape(-1, model.mean.numel())
    model.mean.copy_(sample.mean(0))
    model.std.copy_(sample.std(0).clamp_min(1e-3))
    start = time.time()
    terms = fit_loop(model, lambda b: {"loss": F.cross_entropy(model(b["sequence"], b["length"]), b["label"])},
                     _sequence_batches(batch_size, steps, seed), steps, lr, desc="sequence classifier",
                     progress=progress)
    model.eval()
    meta = {"recipe": {"steps": steps, "batch_size": batch_size, "seed": seed, "lr": lr, "frames": [35, 45]},
            "train_seconds": round(time.time() - start, 1), "final_loss": terms,
            "heldout_seed": HELDOUT_SEED, "heldout": sequence_scores(model)}
    return model.requires_grad_(False), meta
