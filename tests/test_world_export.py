"""World -> export -> FolderDataset round trip, and the data CLI."""

import subprocess
import sys

import torch

from mien.data.folder import FolderDataset, export_samples
from mien.data.world import WorldDataset


def test_world_export_round_trip_keeps_factors_and_landmarks(tmp_path):
    ds = WorldDataset(12, 32, seed=5, design="correlated")
    export_samples(ds.samples(batch_size=5), ds.factors, tmp_path / "d", progress=False)
    back = FolderDataset(tmp_path / "d")
    assert len(back) == 12 and [f.name for f in back.factors] == [f.name for f in ds.factors]
    assert back.factors == ds.factors
    for i in (0, 7, 11):
        a, b = ds[i], back[i]
        assert torch.allclose(a["image"], b["image"], atol=1 / 127.5 + 1e-6)
        assert torch.allclose(a["landmarks2d"], b["landmarks2d"]) and torch.allclose(a["landmarks3d"], b["landmarks3d"])
        assert a["label"] == b["label"] and torch.equal(a["attributes"], b["attributes"])
        for k, v in a["factors"].items():
            assert float(v) == float(b["factors"][k]), k


def run(*args):
    return subprocess.run([sys.executable, "-m", "mien", *args], capture_output=True, text=True)


def test_cli_synth_show_and_errors(tmp_path):
    r = run("data", "synth", "--out", str(tmp_path / "d"), "--n", "20", "--size", "32", "--sequences", "3")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "sequences.npz").is_file() and len(list((tmp_path / "d" / "images").iterdir())) == 20
    r = run("data", "show", str(tmp_path / "d"), "--n", "8", "--landmarks", "--out", str(tmp_path / "g.png"))
    assert r.returncode == 0 and (tmp_path / "g.png").is_file()
    r = run("data", "show", str(tmp_path / "missing"), "--out", str(tmp_path / "g.png"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("data", "synth", "--out", str(tmp_path / "e"), "--design", "grid")
    assert r.returncode == 2 and "unknown design" in r.stderr
    r = run("data", "synth", "--out", str(tmp_path / "e"), "--size", "8")
    assert r.returncode == 2 and "32 to 256" in r.stderr
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("mien ")
