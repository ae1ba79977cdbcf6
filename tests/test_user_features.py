"""`mien eval images --features net.pt`: FID/KID on a user's TorchScript feature network."""

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from mien.cli import app
from mien.data.folder import FolderDataset, export_samples
from mien.data.world import WorldDataset
from mien.errors import ConfigError, DataError
from mien.metrics.fid import fid_from_features, kid_from_features, load_feature_network


class PooledColour(nn.Module):
    """Per-channel means and standard deviations over 4 x 4 cells: N x 96 features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cells = nn.functional.adaptive_avg_pool2d(x, 4)
        spread = nn.functional.adaptive_avg_pool2d(x * x, 4) - cells * cells
        return torch.cat([cells.flatten(1), spread.flatten(1)], 1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("feat")
    for name, seed in (("gen", 1), ("ref", 2)):
        ds = WorldDataset(24, 32, seed)
        export_samples(ds, ds.factors, root / name, progress=False)
    torch.jit.save(torch.jit.script(PooledColour()), str(root / "net.pt"))
    return root


def images(folder):
    ds = FolderDataset(folder, size=32)
    return torch.stack([ds[i]["image"] for i in range(len(ds))])


def test_fid_and_kid_on_the_users_features_match_a_direct_computation(setup, tmp_path):
    result = CliRunner().invoke(app, ["eval", "images", str(setup / "gen"), "--ref", str(setup / "ref"), "--size", "32",
                                      "--metrics", "fid,kid", "--features", str(setup / "net.pt"),
                                      "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "m.json").read_text())
    m = saved["metrics"]
    assert {"fid_mien", "kid_mien", "fid_features", "kid_features", "kid_features_std"} <= set(m)
    net = PooledColour()
    gf, rf = net((images(setup / "gen") + 1) / 2), net((images(setup / "ref") + 1) / 2)
    assert m["fid_features"] == pytest.approx(fid_from_features(gf, rf), rel=1e-4)
    assert m["kid_features"] == pytest.approx(kid_from_features(gf, rf)[0], rel=1e-4, abs=1e-7)
    assert m["fid_features"] != pytest.approx(m["fid_mien"]) and saved["features"].endswith("net.pt")


def test_bad_feature_networks_are_one_clear_error(setup, tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"not torchscript")
    with pytest.raises(DataError, match="is not a TorchScript file"):
        load_feature_network(tmp_path / "weights.pt")
    with pytest.raises(DataError, match="does not exist"):
        load_feature_network(tmp_path / "none.pt")
    torch.jit.save(torch.jit.script(nn.Flatten(0)), str(tmp_path / "flat.pt"))  # returns one vector
    with pytest.raises(DataError, match="must return N x D features"):
        load_feature_network(tmp_path / "flat.pt").features(torch.zeros(2, 3, 8, 8))
    result = CliRunner().invoke(app, ["eval", "images", str(setup / "gen"), "--ref", str(setup / "ref"), "--size", "32",
                                      "--metrics", "pr", "--features", str(setup / "net.pt")])
    assert isinstance(result.exception, ConfigError) and "--features is for fid and kid" in str(result.exception)
