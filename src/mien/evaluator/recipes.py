"""The recipes that produce the shipped evaluators, as run configs for the engine
(``mien evaluator train``).

The image evaluator trains on world faces drawn from a pool of ``identities`` identities so
that the identity embedding can be trained with ArcFace (additive angular margin, Deng et al.
2019; the ArcFace/CosFace identity networks of Pikoulis digest §4.1 and Haas digest §1.8);
every step sees new faces (the data set holds steps x batch faces). The sequence classifier
trains on world landmark sequences of 35-45 frames (Zou §3.6). Both: AdamW (weight decay 1e-4),
linear warm-up over the first 5 % of steps then cosine decay, gradient norm clipped at 5.
Fine-tuning on a prepared real data set starts from the shipped evaluator of the size and
learns what the data labels (``labels: data``; :mod:`mien.evaluator.network`).
"""

from __future__ import annotations

OPTIMISATION = {"optimizer": "adamw", "weight_decay": 1e-4, "lr_schedule": "cosine", "grad_clip": 5.0}


def _train(steps: int, lr: float, seed: int) -> dict:
    return {"max_steps": steps, "lr": lr, "seed": seed, "warmup_steps": max(1, steps // 20), **OPTIMISATION,
            "save_every": max(1, steps // 10), "log_every": 50}


def evaluator_recipe(size: int = 64, steps: int = 4000, batch_size: int = 64, seed: int = 0,
                     identities: int = 1000, lr: float = 2e-3, sex_weight: float = 4.0, init=None) -> dict:
    """The run config of an image evaluator; ``init`` (a checkpoint folder) starts a second stage
    from its weights (the ArcFace class centres start afresh when its identities differ)."""
    train = _train(steps, lr, seed)
    if init is not None:
        train["init_from"] = str(init)
    return {"model": {"name": "evaluator", "identities": identities, "sex_weight": sex_weight},
            "data": {"source": "world", "size": size, "n": steps * batch_size, "seed": seed,
                     "n_identities": identities, "batch_size": batch_size},
            "train": train}


def sequence_recipe(steps: int = 1500, batch_size: int = 64, seed: int = 0, lr: float = 3e-3) -> dict:
    """The run config of the landmark-sequence classifier (one LSTM layer + linear, Zou §3.6)."""
    return {"model": {"name": "sequence_classifier"},
            "data": {"source": "sequences", "n": steps * batch_size, "seed": seed, "frames": [35, 45],
                     "batch_size": batch_size},
            "train": _train(steps, lr, seed)}


def finetune_recipe(data: str, size: int = 64, steps: int = 500, batch_size: int = 64, seed: int = 0,
                    lr: float = 5e-4, init=None, split: str | None = None) -> dict:
    """The run config that fine-tunes an evaluator (default: the shipped one of ``size``) on the
    prepared folder ``data`` (its ``split``, all rows when None)."""
    from mien.evaluator.weights import SHIPPED

    train = {**_train(steps, lr, seed), "init_from": str(init or SHIPPED / f"evaluator_{size}")}
    return {"model": {"name": "evaluator", "labels": "data"},
            "data": {"source": "folder", "path": str(data), "size": size, "batch_size": batch_size, "split": split},
            "train": train}
