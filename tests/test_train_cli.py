"""`mien train` and the inspection verbs end to end, the presets, and the DDP path (2 processes)."""

import pytest
import torch
from model_helpers import mien_cli
from typer.testing import CliRunner

import mien
from mien.cli import app
from mien.config import PRESETS, preset_path
from mien.models.base import families
from mien.train import fit, load_run_config

TINY = sorted(PRESETS.glob("*/tiny.yaml"))


@pytest.mark.parametrize("preset", TINY, ids=[p.parent.name for p in TINY])
def test_every_tiny_preset_trains_and_loads(preset, tmp_path):
    cfg = load_run_config(preset, ["train.max_steps=3", "data.n=128"])
    if cfg.model.get("autoencoder"):  # latent diffusion: train its first stage first
        first = load_run_config(preset_path("vqvae", "tiny"), ["train.max_steps=2", "data.n=128"])
        cfg.model["autoencoder"] = str(fit(first, tmp_path / "first", progress=False))
    if cfg.model["name"] == "psp":  # a GAN encoder: train its generator first
        gan = load_run_config(preset_path("stylegan", "tiny"), ["train.max_steps=2", "data.n=128"])
        cfg.model["generator"] = str(fit(gan, tmp_path / "gan", progress=False))
    out = fit(cfg, tmp_path / "run", progress=False)
    model = mien.load(out)
    if cfg.model["name"] == "psp":  # an encoder, not a sampler: its reconstructions
        x = torch.zeros(2, 3, 32, 32)
        with torch.no_grad():
            assert model.encode(x).shape == (2, model.num_ws, model.w_dim) and model.reconstruct(x).shape == x.shape
        return
    with torch.no_grad():
        drawn = model.sample(2, generator=torch.Generator().manual_seed(0))
    if cfg.data.source == "sequences":  # landmark sequences of a length in the trained range
        samples = drawn["sequence"]
        assert samples.shape[0] == 2 and samples.shape[2:] == (68, 3)
        assert cfg.data.frames[0] <= samples.shape[1] <= cfg.data.frames[1]
    elif cfg.data.source == "mesh_sequences":  # meshes on the data's topology
        assert set(drawn) == {"mesh"} and drawn["mesh"].shape == (2, model.faces.max() + 1, 3)
    elif cfg.data.source == "meshes":  # the DVAE: meshes and their drawn labels
        assert set(drawn) == {"mesh", "label"} and drawn["mesh"].shape == (2, model.faces.max() + 1, 3)
    else:
        assert set(drawn) <= {"image", "label"} and drawn["image"].shape == (2, 3, 32, 32)  # label: conditional GANs
    assert type(model) is families()[cfg.model["name"]][1]
    # `mien sample` writes the samples of every family with the one writer
    result = CliRunner().invoke(app, ["sample", str(out), "--n", "2", "--size", "32", "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    written = tmp_path / ("s" if cfg.data.source == "sequences" else "s.png")
    assert (written / "trajectories.png").is_file() if cfg.data.source == "sequences" else written.is_file()


def test_every_sampling_family_has_a_tiny_preset():
    from mien.models.capabilities import Sampler

    with_preset = {load_run_config(p).model["name"] for p in TINY}
    samplers = {n for n, (_, cls) in families().items() if not n.endswith("_test") and issubclass(cls, Sampler)}
    assert samplers <= with_preset, samplers - with_preset
    assert {"evaluator", "sequence_classifier", "noisy_classifier"}.isdisjoint(samplers)


def test_train_and_inspect_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    r = mien_cli("train", preset_path("arvae", "tiny"), "train.max_steps=4", "--out", run, "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    for verb, extra in (("sample", ["--n", "8"]), ("reconstruct", ["--n", "8"]),
                        ("traverse", ["--dims", "0,1,2", "--steps", "5"]),
                        ("interpolate", ["--a", "0", "--b", "3", "--method", "slerp"])):
        png = tmp_path / f"{verb}.png"
        r = mien_cli(verb, run, *extra, "--out", png)
        assert r.returncode == 0 and png.stat().st_size > 0, (verb, r.stderr[-2000:])
    r = mien_cli("train", "vae/tiny", "train.max_steps=4", "--out", run, "--no-progress", cwd=tmp_path)  # a preset name
    assert r.returncode == 2 and "--resume" in r.stderr
    r = mien_cli("train", "vae/tiny", "model.latent=3", "--out", tmp_path / "x", cwd=tmp_path)
    assert r.returncode == 2 and "unknown key model.latent" in r.stderr and "Traceback" not in r.stderr
    r = mien_cli("train", "vae/huge", "--out", tmp_path / "x", cwd=tmp_path)
    assert r.returncode == 2 and "no preset vae/huge" in r.stderr and "vae/tiny" in r.stderr
    (run / "model.safetensors").write_bytes(b"\x00" * 64)
    r = mien_cli("sample", run, "--out", tmp_path / "s.png")
    assert r.returncode == 2 and "corrupt" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_ddp_on_two_cpu_processes_yields_a_loadable_checkpoint(tmp_path):
    run = tmp_path / "ddp"
    r = mien_cli("train", preset_path("vae", "tiny"), "train.max_steps=4", "--accelerator", "cpu",
                 "--devices", "2", "--strategy", "ddp", "--out", run, "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    model = mien.load(run)
    assert mien.models.checkpoint.read_meta(run)["steps"] == 4
    assert model.reconstruct(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
