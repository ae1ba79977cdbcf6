"""`mien reproduce zou-ch3` end to end at a throwaway size: the three tables, their rows, the
animations, and reuse of finished runs."""

import numpy as np
import torch

import mien
from mien.config import preset_path
from mien.experiments.zou_ch3 import reproduce



def test_reproduce_writes_the_three_tables_and_reuses_runs(tmp_path):
    overrides = ["train.max_steps=2", "model.timesteps=4", "data.n=64", "data.batch_size=16"]
    path = reproduce(preset_path("expr4d", "tiny"), tmp_path, overrides, n=12, progress=False)
    text = path.read_text()
    for row in ("Ground truth", "ACTOR-style CVAE", "Ours (BiT, Alg. 1)", "FFE", "FFM", "FFB", "1-D U-Net",
                "Transformer (causal)", "| BiT |"):
        assert row in text, row
    assert (tmp_path / "animations" / "label_bit" / "sequence_000.gif").is_file()
    assert (tmp_path / "animations" / "fill_middle" / "trajectories.png").is_file()
    assert "](animations/fill_middle/trajectories.png)" in text and "](animations/label_actor/sequence_000.gif)" in text
    stamp = (tmp_path / "runs" / "unet" / "model.safetensors").stat().st_mtime_ns
    bit = mien.load(tmp_path / "runs" / "bit")

    def largest(row):  # largest standardised coordinate of a row's saved sequences
        seqs = np.load(tmp_path / "animations" / row / "sequences.npz")["sequences"]
        return bit.normalise(torch.from_numpy(seqs)).abs().max().item()

    # a sampling option given now reaches the evaluation without retraining: clip_x0 bounds the
    # label-controlled samples up to the 3 Adagrad steps of at most guidance_lr each after the last step
    bound = 0.01 + bit.config.guidance_steps * bit.config.guidance_lr
    assert largest("label_bit") > bound
    reproduce(preset_path("expr4d", "tiny"), tmp_path, [*overrides, "model.clip_x0=0.01"], n=12, progress=False)
    assert (tmp_path / "runs" / "unet" / "model.safetensors").stat().st_mtime_ns == stamp
    assert largest("label_bit") <= bound + 1e-4 and largest("label_unet") <= bound + 1e-4
