"""The model zoo: publishing stores float16 weights with recipe and metrics; get copies a folder
that loads back to the same model (up to float16 rounding); unknown names are clear errors."""

import pytest
import torch

import mien
from mien import zoo
from mien.errors import ConfigError, DataError
from mien.models import build_model
from mien.models import checkpoint


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = build_model({"name": "vae", "image_size": 32, "widths": [8, 16, 16], "latent_dim": 4})
    return checkpoint.save(model, tmp_path / "run", {"model": model.config_dict()}, {"model": "vae", "steps": 7})


def test_publish_then_get_round_trips_within_float16(ckpt, tmp_path, monkeypatch):
    root = tmp_path / "zoo"
    monkeypatch.setattr(zoo, "ZOO", root)
    zoo.publish(ckpt, "tiny-vae", "configs/vae/tiny.yaml", {"psnr": 21.5}, root=root)
    assert (root / "tiny-vae" / "model.safetensors").stat().st_size < (ckpt / "model.safetensors").stat().st_size * 0.6
    [entry] = zoo.entries()
    assert entry == {"name": "tiny-vae", "model": "vae", "parameters": None, "steps": 7,
                     "recipe": "configs/vae/tiny.yaml", "metrics": {"psnr": 21.5}}
    copy = zoo.get("tiny-vae", tmp_path / "copy")
    original, loaded = mien.load(ckpt), mien.load(copy)
    for (name, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items()):
        assert b.dtype == a.dtype, name
        torch.testing.assert_close(b, a.half().to(a.dtype), msg=name)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded.reconstruct(x), original.reconstruct(x), atol=2e-2, rtol=0)


def test_unknown_names_and_incomplete_folders_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO", tmp_path)
    with pytest.raises(ConfigError, match="no zoo model 'nope'"):
        zoo.get("nope", tmp_path / "out")
    with pytest.raises(DataError, match="not a complete mien checkpoint"):
        zoo.publish(tmp_path, "x", "recipe.yaml", root=tmp_path / "z")


def test_shipped_arvae_dimensions_follow_their_attributes(tmp_path):
    """The zoo AR-VAE's z_i ranks held-out faces of its training world by attribute i (issue 3:
    its traversal rows must change their own attribute). The previous zoo model fails this
    (intensity 0.41)."""
    from scipy.stats import spearmanr

    folder = zoo.get("arvae", tmp_path / "arvae")
    model = mien.load(folder)
    batch = checkpoint.training_world(folder, 400, seed=4242).batch(range(400))
    with torch.no_grad():
        z = model.encode(batch["image"])
    for i, name in enumerate(model.config.attributes):
        assert spearmanr(z[:, i], batch["factors"][name]).statistic > 0.9, name


def test_get_never_removes_or_overwrites_user_files(ckpt, tmp_path, monkeypatch):
    """Issue 20 item 1: `zoo get --out DIR` once emptied DIR (and `--out .` the current folder)."""
    from mien.errors import OutputError

    root = tmp_path / "zoo"
    monkeypatch.setattr(zoo, "ZOO", root)
    zoo.publish(ckpt, "tiny-vae", "configs/vae/tiny.yaml", root=root)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputError, match="not empty.*thesis.tex"):
        zoo.get("tiny-vae", mine)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    monkeypatch.chdir(mine)
    with pytest.raises(OutputError, match="not empty"):
        zoo.get("tiny-vae", ".")
    assert (mine / "thesis.tex").read_text() == "years of work"
    with pytest.raises(OutputError, match="not empty"):  # a trained checkpoint is the user's too
        zoo.get("tiny-vae", ckpt)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        zoo.get("tiny-vae", tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert mien.load(zoo.get("tiny-vae", empty)) is not None
    assert mien.load(zoo.get("tiny-vae", empty)) is not None  # an earlier zoo copy is brought up to date
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
