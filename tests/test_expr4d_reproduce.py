"""`mien reproduce zou-ch3` end to end at a throwaway size: the three tables, their rows, the
animations, and reuse of finished runs."""

from pathlib import Path

from mien.expr4d.reproduce import reproduce

ROOT = Path(__file__).resolve().parents[1]


def test_reproduce_writes_the_three_tables_and_reuses_runs(tmp_path):
    overrides = ["train.max_steps=2", "model.timesteps=4", "data.n=64", "data.batch_size=16"]
    path = reproduce(ROOT / "configs/expr4d/tiny.yaml", tmp_path, overrides, n=12, progress=False)
    text = path.read_text()
    for row in ("Ground truth", "ACTOR-style CVAE", "Ours (BiT, Alg. 1)", "FFE", "FFM", "FFB", "1-D U-Net",
                "Transformer (causal)", "| BiT |"):
        assert row in text, row
    assert (tmp_path / "animations" / "label_bit" / "sequence_000.gif").is_file()
    assert (tmp_path / "animations" / "fill_middle" / "trajectories.png").is_file()
    stamp = (tmp_path / "runs" / "unet" / "model.safetensors").stat().st_mtime_ns
    reproduce(ROOT / "configs/expr4d/tiny.yaml", tmp_path, overrides, n=12, progress=False)
    assert (tmp_path / "runs" / "unet" / "model.safetensors").stat().st_mtime_ns == stamp
