"""Diffusion models: training lowers the loss, latent diffusion over a VQ-VAE, sampling and
editing from the command line."""

import shutil
import subprocess
import sys

import pytest
import torch

import mien
from mien.config import preset_path
from mien.data.world import WorldDataset
from mien.errors import ConfigError
from mien.models import build_model
from mien.train import fit, load_run_config, run_config

TINY = {"name": "diffusion", "image_size": 32, "condition": "expression", "num_classes": 8,
        "denoiser": {"preset": "tiny", "channels": [8, 16], "norm_groups": 4}}


def test_tiny_class_conditional_model_lowers_its_loss():
    data = WorldDataset(256, 32, 0, fixed={"pitch": 0, "roll": 0}).batch(range(256))
    torch.manual_seed(0)
    model = build_model(TINY)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(80):
        idx = torch.randint(256, (16,))
        loss = model.loss({"image": data["image"][idx], "label": data["label"][idx]})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:5]) / 5


def test_null_label_dropout_rate():
    model = build_model({**TINY, "p_uncond": 0.3})
    dropped = model._drop(torch.zeros(20000, dtype=torch.long)) == 8
    assert abs(dropped.float().mean() - 0.3) < 0.02
    per_batch = build_model({**TINY, "p_uncond": 0.5, "uncond_per_batch": True})._drop(torch.zeros(100, dtype=torch.long))
    assert per_batch.unique().numel() == 1


def test_latent_diffusion_over_a_vqvae_is_self_contained(tmp_path):
    vq = fit(load_run_config(preset_path("vqvae", "tiny"), ["train.max_steps=2", "data.n=64"]),
             tmp_path / "vq", progress=False)
    cfg = run_config({"model": {**TINY, "autoencoder": str(vq), "denoiser": {"preset": "tiny", "channels": [8, 16],
                                                                              "norm_groups": 4}},
                      "data": {"size": 32, "n": 64, "batch_size": 16}, "train": {"max_steps": 2, "save_every": 0}})
    out = fit(cfg, tmp_path / "ldm", progress=False)
    shutil.rmtree(vq)  # the diffusion checkpoint carries the first stage
    model = mien.load(out)
    assert float(model.scale) > 0 and model.latent_shape[1] == 4
    assert model.config.class_names[1] == "happy"
    x = model.sample(3, cond="happy", steps=3, guidance=2.0, generator=torch.Generator().manual_seed(0))["image"]
    assert x.shape == (3, 3, 32, 32) and x.abs().max() <= 1
    with pytest.raises(ConfigError, match="unknown class"):
        model.sample(1, cond="bored", steps=2)


def test_sample_and_edit_from_the_command_line(tmp_path):
    run = fit(load_run_config(preset_path("diffusion", "tiny"), ["train.max_steps=2", "data.n=64"]),
              tmp_path / "run", progress=False)
    cli = lambda *a: subprocess.run([sys.executable, "-m", "mien", *map(str, a)], capture_output=True, text=True)  # noqa: E731
    r = cli("sample", run, "--n", "4", "--label", "happy", "--guidance", "3", "--steps", "4", "--out", tmp_path / "s.png")
    assert r.returncode == 0 and (tmp_path / "s.png").is_file(), r.stderr[-1500:]
    r = cli("edit", run, "--from", "neutral", "--to", "happy", "--t0", "300", "--steps", "4", "--out", tmp_path / "e.png")
    assert r.returncode == 0 and (tmp_path / "e.png").is_file(), r.stderr[-1500:]
    r = cli("sample", run, "--per-class", "2", "--steps", "3", "--out", tmp_path / "p.png")
    assert r.returncode == 0 and (tmp_path / "p.png").is_file(), r.stderr[-1500:]
    r = cli("edit", run, "--to", "all", "--t0", "200", "--steps", "3", "--out", tmp_path / "all.png")
    assert r.returncode == 0 and (tmp_path / "all.png").is_file(), r.stderr[-1500:]
    r = cli("edit", run, "--to", "happy", "--image", tmp_path / "missing.png", "--out", tmp_path / "e.png")
    assert r.returncode == 2 and "does not exist" in r.stderr
