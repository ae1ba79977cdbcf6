"""``mien eval ckpt`` / ``mien eval images``: JSON and table on success, one line and exit 2 on user errors."""

import json

import pytest

from mien.data.folder import export_samples
from mien.data.world import WorldDataset
from mien.models import build_model
from mien.models import checkpoint
from model_helpers import run_main  # noqa: F401 (fixtures)


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def mien(capsys, monkeypatch):
    """Run the ``mien`` entry point in this process (as the console script does) and capture it."""

    def run(*args):
        return Result(*run_main(monkeypatch, capsys, *args))

    return run


@pytest.fixture(scope="module")
def vae_ckpt(tmp_path_factory):
    """An untrained 32-px VAE checkpoint: scoring needs no training."""
    out = tmp_path_factory.mktemp("ckpt")
    model = build_model({"name": "vae", "image_size": 32, "widths": [8, 16, 16], "latent_dim": 4})
    config = {"model": model.config_dict(), "data": {"size": 32, "design": "iid", "fixed": {"pitch": 0.0}, "seed": 0}}
    return checkpoint.save(model, out, config, {"steps": 0})


def test_eval_ckpt_writes_every_applicable_metric(mien, vae_ckpt, tmp_path):
    r = mien("eval", "ckpt", vae_ckpt, "--n", 60, "--batch-size", 30, "--out", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "m.json").read_text())
    m = result["metrics"]
    assert {"fid_mien", "kid_mien", "precision", "recall", "psnr", "ssim", "lpips_mien", "csim_mien", "mig",
            "dci_disentanglement", "beta_vae", "expression_acc", "landmark_nme"} <= set(m)
    assert "pitch" not in json.dumps(m) and 0 <= m["mig"] <= 1 and m["fid_mien"] > 0
    assert "fid_mien" in r.stdout


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    for name, seed in (("gen", 1), ("ref", 2)):
        ds = WorldDataset(40, 32, seed)
        export_samples(ds, ds.factors, root / name, progress=False)
    return root / "gen", root / "ref"


def test_eval_images_scores_two_folders(mien, folders, tmp_path):
    r = mien("eval", "images", folders[0], "--ref", folders[1], "--size", 32,
             "--metrics", "fid,pr,ssim,psnr", "--out", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert set(m) == {"fid_mien", "precision", "recall", "density", "coverage", "ssim", "psnr"}


@pytest.mark.parametrize("args,message", [
    (("eval", "ckpt", "no/such/ckpt"), "does not exist"),
    (("eval", "images", "no/such/dir", "--ref", "no/such/ref"), "no/such"),
])
def test_bad_input_gives_one_line_and_exit_2(mien, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = mien(*args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_unknown_or_inapplicable_metric(mien, vae_ckpt, folders, tmp_path):
    r = mien("eval", "ckpt", vae_ckpt, "--metrics", "fid,wow", "--out", tmp_path / "m.json")
    assert r.returncode == 2 and "unknown metric 'wow'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = mien("eval", "images", folders[0], "--ref", folders[1], "--size", 32, "--metrics", "mig", "--out", tmp_path / "m.json")
    assert r.returncode == 2 and "needs codes" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_pairwise_means_are_kept_per_metric():
    """Two pairwise metrics in one run give the same values as each computed on the whole set."""
    from mien.evaluator import load_evaluator
    from mien.metrics import image
    from mien.metrics.evaluate import dataset_batches, evaluate_model

    class Halving:
        def reconstruct(self, x):
            return x * 0.5

    ds = WorldDataset(20, 32, seed=1)
    both = evaluate_model(Halving(), dataset_batches(ds, 20, 10), "psnr,ssim", load_evaluator(32))
    x = ds.batch(range(20))["image"]
    assert both["psnr"] == pytest.approx(image.psnr(x, x * 0.5), rel=1e-5)
    assert both["ssim"] == pytest.approx(image.ssim(x, x * 0.5), rel=1e-5)
