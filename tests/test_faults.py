"""Fault injection and resume equivalence (issue 20): a training process SIGKILLed while it writes
its checkpoint, at several points, keeps the previous checkpoint and resumes to the weights of an
uninterrupted run; resumes at an epoch boundary and across several epochs; and a 2-process CPU
DDP run (gloo) of a model with phases of different periods, cut and resumed, equals the
uninterrupted 2-process run."""

import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import torch
from model_helpers import mien_cli  # noqa: F401 (fixtures)
from safetensors.torch import load_file

import mien
from mien.config import preset_path
from mien.train import fit, run_config
from mien.train.state import read_state


def tiny(steps, save_every=5):
    """256 faces in batches of 32: 8 steps an epoch."""
    return run_config({
        "model": {"name": "vae", "widths": [8, 16, 16], "latent_dim": 4},
        "data": {"size": 32, "n": 256, "batch_size": 32, "fixed": {"pitch": 0, "roll": 0}},
        "train": {"max_steps": steps, "save_every": save_every, "lr": 1e-3}})


def weights(run):
    return load_file(str(Path(run) / "model.safetensors"))


def same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return weights(fit(tiny(12), tmp_path_factory.mktemp("full") / "run", progress=False))


def _killed_while_writing(run, target, point):
    """Train 12 steps (saves at 5, 10, 12) and SIGKILL this process during the second write of
    ``target``: 'mid-write' (the temp file cut to half its bytes, unsynced) or 'before-rename' (the
    temp file complete, not yet moved onto its name)."""
    real_fsync, real_replace, seen = os.fsync, os.replace, []

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def fsync(fd):
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if point == "mid-write" and name.startswith(f".{target}.") and name.endswith(".tmp"):
            seen.append(name)
            if len(seen) == 2:
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
                die()
        real_fsync(fd)

    def replace(src, dst):
        if point == "before-rename" and Path(dst).name == target:
            seen.append(dst)
            if len(seen) == 2:
                die()
        real_replace(src, dst)

    os.fsync, os.replace = fsync, replace
    fit(tiny(12), run, progress=False)


@pytest.mark.parametrize("target,point", [("last.ckpt", "mid-write"), ("last.ckpt", "before-rename"),
                                          ("model.safetensors", "mid-write"), ("meta.json", "before-rename")])
def test_sigkill_while_saving_keeps_the_previous_checkpoint_and_resume_is_exact(tmp_path, uninterrupted, target, point):
    """The state is written first, then model.safetensors, config.yaml and meta.json, each to a temp
    file in its folder, synced and renamed. Killed during the step-10 save, every file is whole: the
    state is step 5's (killed at its own write) or step 10's, the model folder loads, meta.json
    still says step 5 (written last; a kill after model.safetensors was replaced leaves step 10's
    weights under step 5's meta.json until the resume rewrites it), and a resume from whichever
    state survived ends with exactly the uninterrupted weights, leaving no temp file behind."""
    run = tmp_path / "run"
    child = multiprocessing.get_context("fork").Process(target=_killed_while_writing, args=(run, target, point))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL  # the kill point was reached
    stale = [p.name for p in run.rglob(".*.tmp")]
    assert len(stale) == 1  # the killed write's temp file, hidden
    assert read_state(run / "state" / "last.ckpt")["mien"]["step"] == (5 if target == "last.ckpt" else 10)
    mien.load(run)
    assert mien.models.checkpoint.read_meta(run)["steps"] == 5
    (run / ".notes.tmp").write_text("a user's file, not one of mien's temp files")
    fit(tiny(12), run, resume=True, progress=False)
    assert same(weights(run), uninterrupted)
    assert mien.models.checkpoint.read_meta(run)["steps"] == 12
    assert [p.name for p in run.rglob(".*.tmp")] == [".notes.tmp"]


def test_resume_at_an_epoch_boundary_and_across_epochs_is_exact(tmp_path):
    """Stopped exactly at the end of epoch 0 (step 8), resumed to the end of epoch 1 (16), resumed
    again to step 20 (mid-epoch 2): the weights equal those of one 20-step run."""
    full = weights(fit(tiny(20), tmp_path / "full", progress=False))
    fit(tiny(8), tmp_path / "cut", progress=False)
    assert read_state(tmp_path / "cut" / "state" / "last.ckpt")["mien"]["step"] == 8
    fit(tiny(16), tmp_path / "cut", resume=True, progress=False)
    fit(tiny(20), tmp_path / "cut", resume=True, progress=False)
    assert same(weights(tmp_path / "cut"), full)


def ddp_stylegan(run, steps, cwd, resume=False):
    """The tiny StyleGAN2 (phases D every step, R1 every 4, G every step, path length every 2) on
    2 CPU processes (gloo): 32 faces, 4 a process a step (4 steps an epoch), saved every 3 steps."""
    r = mien_cli("train", preset_path("stylegan", "tiny"), f"train.max_steps={steps}", "train.save_every=3",
                 "data.n=32", "data.batch_size=4", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
                 "--out", run, "--no-progress", *(["--resume"] if resume else []), cwd=cwd)
    assert r.returncode == 0, r.stderr[-3000:]


def test_two_process_ddp_with_phases_resumes_to_the_uninterrupted_weights(tmp_path):
    """Cut after step 3 (R1 ran at 0, path length at 0 and 2), resumed to step 6 across the epoch
    boundary (R1 and path length at 4): equal to one 6-step 2-process run. Before, a model with
    phases did not train under DDP at all (DDP's reducer expects one backward through every
    parameter per step); the engine now averages each phase's gradients itself."""
    ddp_stylegan(tmp_path / "full", 6, tmp_path)
    ddp_stylegan(tmp_path / "cut", 3, tmp_path)
    state = read_state(tmp_path / "cut" / "state" / "last.ckpt")["mien"]
    assert state["step"] == 3 and state["world_size"] == 2
    ddp_stylegan(tmp_path / "cut", 6, tmp_path, resume=True)
    assert same(weights(tmp_path / "cut"), weights(tmp_path / "full"))
    assert mien.models.checkpoint.read_meta(tmp_path / "cut")["steps"] == 6
    assert mien.load(tmp_path / "cut").sample(2, generator=torch.Generator().manual_seed(0))["image"].shape == (2, 3, 32, 32)
