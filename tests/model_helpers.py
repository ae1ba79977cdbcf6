"""Shared pieces of the model tests: a fixed pool of world faces at 32 px and a plain Adam loop
that steps every parameter group of a model on its own loss, as the engine does."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mien

from mien.data.world import WorldDataset
from mien.models import build_model

SMALL = {"image_size": 32, "widths": [8, 16, 32], "blocks": 0}


@functools.lru_cache(maxsize=None)
def world_pool(n: int = 512, seed: int = 0, **fixed) -> dict:
    """``n`` frontal-ish world faces (pitch = roll = 0 plus ``fixed``) as one batch dict."""
    return WorldDataset(n, 32, seed=seed, fixed={"pitch": 0, "roll": 0, **fixed}).batch(range(n))


def subset(batch: dict, idx: torch.Tensor) -> dict:
    return {"image": batch["image"][idx], "factors": {k: v[idx] for k, v in batch["factors"].items()}}


def train(config: dict, data: dict | None = None, steps: int = 200, batch_size: int = 32, lr: float = 2e-3,
          seed: int = 0):
    """Build ``config`` (merged over :data:`SMALL`) and train it as the engine does, without
    Lightning: ``fit_data`` on the first batch, then each step every due phase of ``phases()``
    stepped with its group's own Adam. Returns (model in eval mode, list of per-step dicts of
    floats, each phase's loss under its ``log_key``)."""
    data = world_pool() if data is None else data
    torch.manual_seed(seed)
    model = build_model({**SMALL, **config})
    model.train()
    optimisers = {g: torch.optim.Adam(p, lr=lr) for g, p in model.param_groups().items()}
    gen = torch.Generator().manual_seed(seed + 1)
    n = len(data["image"])
    history = []
    groups = model.param_groups()
    for step in range(steps):
        batch = subset(data, torch.randint(n, (batch_size,), generator=gen))
        if step == 0:
            model.fit_data(batch)
        logged = {}
        for phase in model.phases():
            if step % phase.every:
                continue
            out = phase.loss(batch, step)
            optimisers[phase.group].zero_grad(set_to_none=True)
            out["loss"].backward(inputs=groups[phase.group])
            optimisers[phase.group].step()
            logged.update({(phase.log_key if k == "loss" else k): float(v.detach()) for k, v in out.items()})
        history.append(logged)
    return model.eval(), history


def mean_of(history: list[dict], key: str, sl: slice) -> float:
    values = [h[key] for h in history[sl]]
    return sum(values) / len(values)


def reconstruction_vs_mean(model, images: torch.Tensor) -> tuple[float, float]:
    """(MSE of the model's reconstruction, MSE of predicting the mean image) on ``images``."""
    with torch.no_grad():
        mse = float(((model.reconstruct(images) - images) ** 2).mean())
    base = float(((images.mean(0, keepdim=True) - images) ** 2).mean())
    return mse, base


class Captured:
    """What capsys.readouterr() gives: .out and .err."""

    def __init__(self, out: str, err: str):
        self.out, self.err = out, err


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run the ``mien`` entry point in this process, as the console script does: (exit code, out, err)."""
    import sys

    from mien.cli import main

    monkeypatch.setattr(sys, "argv", ["mien", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def mien_main(capsys, monkeypatch):
    """``run(*args) -> (exit code, Captured)``: the ``mien`` entry point run in this process."""

    def run(*args):
        code, out, err = run_main(monkeypatch, capsys, *args)
        return code, Captured(out, err)

    return run


def mien_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """``python -m mien ARGS`` in a subprocess (one thread) running this checkout's mien from any
    working folder (a relative ``PYTHONPATH=src`` would find the installed copy instead)."""
    src = str(Path(mien.__file__).parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "mien", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)
