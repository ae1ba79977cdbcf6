"""The main job at the tiny preset (issue 6): every stage runs, every number is computed, the
report shows every picture, and a re-run reuses finished stages and models."""

import json
import math
import re

import pytest

from mien.errors import ConfigError
from mien.experiments.demo import MODELS, DemoConfig, run_demo

STAGES = ("world", "vae", "tcvae", "arvae", "vqvae", "diffusion", "edits", "gan")


def _tiny(out):
    return DemoConfig(out=out, preset="tiny", n_codes=200, per_class=8, n_edits=2, steps=5, n_gan=64, invert_steps=5, progress=False,
                      edit_sweep=((300, 500), (4.0,)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(_tiny(out))


def _numbers(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _numbers(v)
    elif isinstance(x, float):
        yield x


def test_every_stage_computes_finite_numbers(demo):
    out, _ = demo
    results = {s: json.loads((out / s / "results.json").read_text()) for s in STAGES}
    assert all(math.isfinite(v) for v in _numbers(results))
    for name in ("vae", "tcvae", "arvae"):
        m = results[name]["metrics"]
        assert {"mig", "mig_regularised", "sap", "factor_vae", "dci_disentanglement", "psnr"} <= set(m)
        assert 0 <= m["mig"] <= 1 and 0 <= m["factor_vae"] <= 1 and m["psnr"] > 5
    rows = results["diffusion"]["rows"]
    assert [r["class"] for r in rows] == ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger",
                                          "contempt", "all"]
    assert all(0 <= r["expression_acc"] <= 1 and r["fid_mien"] >= 0 for r in rows)
    assert rows[-1]["expression_acc"] == pytest.approx(sum(r["expression_acc"] for r in rows[:-1]) / 8)
    edits = results["edits"]["rows"]
    assert len(edits) == 8 and edits[-1]["target"] == "mean" and "neutral" not in [r["target"] for r in edits]
    assert all(-1 <= r["csim_mien"] <= 1 and r["psnr"] > 0 for r in edits)
    sweep = results["edits"]["sweep"]
    assert [(r["t0"], r["guidance"]) for r in sweep] == [(300, 4.0), (500, 4.0)]
    assert sweep[1]["psnr"] == pytest.approx(edits[-1]["psnr"])  # the shown setting is the per-target table's
    gan = results["gan"]["metrics"]
    assert gan["fid_mien"] > 0 and all(0 <= gan[k] <= 1 for k in ("precision", "recall", "coverage"))


def test_report_shows_every_picture_and_the_run(demo):
    out, page = demo
    text = page.read_text()
    pictures = re.findall(r'<img src="([^"]+)"', text)
    assert len(pictures) == 2 + 3 * 5 + 2 + 2 + 1 + 3 + 4
    assert text.count("<table>") == 7
    assert all((out / p).is_file() for p in pictures)
    assert "preset tiny" in text and "seed 0" in text and "z0 intensity" not in text  # labels live in the PNGs
    for label in ("AR-VAE", "beta-TCVAE", "MIG (intensity, yaw, age)", "csim_mien", "fid_mien", "StyleGAN2", "psi"):
        assert label in text


def test_rerun_reuses_finished_stages_and_models(demo):
    out, page = demo
    weights = {m: (out / "models" / m / "model.safetensors").stat().st_mtime_ns for m in MODELS}
    before = json.loads((out / "edits" / "results.json").read_text())
    (out / "vae" / "results.json").unlink()  # as if interrupted during the VAE stage
    run_demo(_tiny(out))
    assert {m: (out / "models" / m / "model.safetensors").stat().st_mtime_ns for m in MODELS} == weights
    assert json.loads((out / "edits" / "results.json").read_text()) == before
    assert (out / "vae" / "results.json").is_file()


def test_a_stage_runs_again_when_its_model_changed(demo):
    """A demo folder made with other weights (an older zoo, a retrained model) is brought up to date."""
    import torch
    from safetensors.torch import load_file, save_file

    out, _ = demo
    stamp = {s: (out / s / "results.json").stat().st_mtime_ns for s in STAGES}
    path = out / "models" / "vae" / "model.safetensors"
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in load_file(str(path)).items()}, str(path))
    run_demo(_tiny(out))
    again = {s: (out / s / "results.json").stat().st_mtime_ns for s in STAGES}
    assert [s for s in STAGES if again[s] != stamp[s]] == ["vae"]
    assert json.loads((out / "vae" / "results.json").read_text())["weights"]["vae"] is not None


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="tiny or small"):
        DemoConfig(out=tmp_path, preset="huge")
