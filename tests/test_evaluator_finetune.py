"""Fine-tuning the evaluator on a prepared real data set (`mien evaluator train --data`): labels
mapped by name onto its heads, a loss on what the data labels, and the verb end to end."""

import json

import pytest
import torch
from torch.utils.data import default_collate
from typer.testing import CliRunner

from data_layouts import make_affectnet, make_celeba, make_fer
from mien.cli import app
from mien.data.folder import FolderDataset
from mien.data.prepare import prepare
from mien.evaluator import load_evaluator
from mien.evaluator.network import Evaluator, EvaluatorConfig
from mien.metrics.heldout import data_scores
from mien.models import build_model


def prepared(tmp_path, maker, **kw):
    maker(tmp_path / "src", **kw)
    prepare(tmp_path / "src", tmp_path / "out", size=32, workers=1, progress=False)
    return FolderDataset(tmp_path / "out", size=32)


def test_labels_map_by_name_onto_the_heads(tmp_path):
    fer = prepared(tmp_path / "fer", make_fer)
    config = EvaluatorConfig.from_data({"labels": "data"}, fer)
    # FER: angry disgust fear happy sad surprise neutral -> world order neutral happy sad surprise fear disgust anger
    assert config.expression_map == [6, 5, 4, 1, 2, 3, 0] and config.attribute_sources == []
    celeba = prepared(tmp_path / "celeba", make_celeba, n=4)
    config = EvaluatorConfig.from_data({"labels": "data"}, celeba)
    assert config.attribute_sources == ["Male", "Eyeglasses", "!No_Beard", "Wearing_Hat"]
    batch = default_collate([celeba[i] for i in range(4)])
    targets = Evaluator(config).data_targets(batch)
    torch.testing.assert_close(targets["attributes"][:, 2], 1 - batch["factors"]["No_Beard"].float())
    assert set(targets) == {"attributes"}


def test_the_loss_learns_what_the_data_labels(tmp_path):
    """Flipped sex labels: the shipped evaluator gets them wrong, a few fine-tuning steps fix it."""
    ds = prepared(tmp_path, make_celeba, n=8)
    batch = default_collate([ds[i] for i in range(8)])
    batch["factors"]["Male"] = 1 - batch["factors"]["Male"]
    model = build_model({"name": "evaluator", "labels": "data"}, data=ds)
    model.load_state_dict(load_evaluator(32).state_dict(), strict=False)

    def sex_acc():
        with torch.no_grad():
            return ((model(batch["image"])["attributes"][:, 0] > 0).float() == batch["factors"]["Male"]).float().mean()

    before = sex_acc()
    opt = torch.optim.Adam(model.heads.parameters(), lr=3e-2)  # the heads alone: fast, and enough here
    for _ in range(40):
        opt.zero_grad()
        loss = model.loss(batch)
        loss["loss"].backward()
        opt.step()
    assert set(loss) == {"loss", "attributes"}
    assert before <= 0.5 and sex_acc() == 1.0


def test_evaluator_train_on_data_writes_a_checkpoint_with_data_scores(tmp_path):
    prepared(tmp_path, make_affectnet)
    result = CliRunner().invoke(app, ["evaluator", "train", "--data", str(tmp_path / "out"), "--size", "32",
                                      "--steps", "2", "--batch-size", "3", "--split", "train",
                                      "--out", str(tmp_path / "ev"), "--no-progress"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "ev" / "meta.json").read_text())
    assert set(meta["heldout"]) == {"expression_acc", "landmark_nme"}  # scored on the val split
    assert meta["init_from"]["not_copied"] == [] and meta["recipe"]["data"]["split"] == "train"
    model = load_evaluator(32, tmp_path / "ev")
    scores = data_scores(model, FolderDataset(tmp_path / "out", size=32, split="val"))
    assert scores == pytest.approx(meta["heldout"])


def test_data_without_labels_the_evaluator_knows_is_one_clear_error(tmp_path):
    from mien.errors import ConfigError

    ds = prepared(tmp_path, make_fer)
    model = build_model({"name": "evaluator", "labels": "data", "expression_map": []}, data=ds)
    with pytest.raises(ConfigError, match="labels nothing this evaluator has a head for"):
        model.loss(default_collate([ds[0], ds[1]]))


def test_expression_and_attribute_accuracy_read_real_labels_through_the_map(tmp_path):
    from mien.errors import ConfigError
    from mien.metrics.registry import _attr_acc, _expr_acc

    fer = prepared(tmp_path / "fer", make_fer)
    batch = default_collate([fer[i] for i in range(len(fer))])
    model = build_model({"name": "evaluator", "labels": "data"}, data=fer)
    model.load_state_dict(load_evaluator(32).state_dict(), strict=False)
    with torch.no_grad():
        predicted = model(batch["image"])["expression"].argmax(1)
    mapped = torch.tensor(model.config.expression_map)[batch["label"]]
    assert _expr_acc(batch["image"], batch, model)["expression_acc"] == pytest.approx(
        (predicted == mapped).float().mean().item())
    assert _attr_acc(batch["image"], batch, model) == {}  # FER labels no attributes
    celeba = prepared(tmp_path / "celeba", make_celeba, n=3)
    batch = default_collate([celeba[i] for i in range(3)])
    with pytest.raises(ConfigError, match="5 binary attributes.*mien evaluator train --data"):
        _attr_acc(batch["image"], batch, load_evaluator(32))
