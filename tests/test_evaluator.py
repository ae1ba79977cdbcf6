"""The shipped evaluators on fresh held-out world data (issue 5, "What it must show"), their
loading, and the sequence classifier."""

import functools
import json

import pytest
import torch

from mien.errors import ConfigError, DataError
from mien.evaluator import SequenceClassifier, evaluator_for, load_evaluator, load_sequence_classifier
from mien.evaluator.recipes import evaluator_recipe, sequence_recipe
from mien.evaluator.weights import SHIPPED, world_fingerprint
from mien.metrics.heldout import evaluator_scores, sequence_scores
from mien.models import checkpoint
from mien.train import fit, run_config

FRESH_SEED = 4242  # neither the training seed nor the held-out seed recorded in meta.json


@functools.lru_cache(maxsize=None)
def scores(size: int) -> dict:
    return evaluator_scores(load_evaluator(size), n=1200, seed=FRESH_SEED)


def test_shipped_64px_evaluator_reaches_the_issue_targets():
    s = scores(64)
    print(json.dumps(s, indent=1))  # per intensity band, per attribute
    assert s["expression_acc"] >= 0.95
    assert s["expression_acc_0.75_1.00"] >= s["expression_acc_0.00_0.25"]
    assert s["attribute_acc"] >= 0.95
    assert s["landmark_nme"] <= 0.05
    assert s["identity_auc"] >= 0.9  # chance is 0.5
    assert s["pose_mae_deg"] < 5


def test_shipped_32px_evaluator_is_usable():
    s = scores(32)
    assert s["expression_acc"] >= 0.9 and s["attribute_acc"] >= 0.9 and s["landmark_nme"] <= 0.08
    assert s["identity_auc"] >= 0.85


@pytest.mark.parametrize("size", [32, 64])
def test_shipped_meta_records_world_seed_and_heldout_scores(size):
    meta = load_evaluator(size).meta
    assert meta["model"] == "evaluator" and meta["recipe"]["data"]["size"] == size
    assert checkpoint.read_config(SHIPPED / f"evaluator_{size}")["data"]["size"] == size
    assert meta["world_fingerprint"] == world_fingerprint(size), "the world changed: retrain the evaluators"
    assert {"expression_acc", "attribute_acc", "landmark_nme", "identity_auc"} <= set(meta["heldout"])
    assert (SHIPPED / f"evaluator_{size}" / "model.safetensors").stat().st_size < 8e6


def test_shipped_sequence_classifier_classifies_fresh_sequences():
    clf = load_sequence_classifier()
    assert isinstance(clf, SequenceClassifier) and clf.meta["heldout"]["accuracy"] >= 0.9
    assert sequence_scores(clf, n=300, seed=FRESH_SEED)["accuracy"] >= 0.9


def test_evaluator_recipe_trains_through_the_engine_and_loads_as_user_weights(tmp_path):
    recipe = evaluator_recipe(size=32, steps=6, batch_size=8, identities=16)
    recipe["model"].update(widths=[4, 4, 4, 8], neck=8, embed_dim=4)
    assert recipe["train"]["optimizer"] == "adamw" and recipe["train"]["lr_schedule"] == "cosine"
    out = fit(run_config(recipe), tmp_path / "mine", progress=False)
    model = checkpoint.load(out)
    loaded = load_evaluator(32, out)
    assert evaluator_for(32, out) is loaded
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(loaded.features(x), model.features(x))
    assert loaded(torch.rand(2, 3, 48, 48))["landmarks"].shape == (2, 68, 2)  # other sizes are resized
    assert set(loaded.state_dict()) >= {"arcface.weight"}
    (out / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(DataError, match="corrupt"):
        load_evaluator(32, out)
    with pytest.raises(DataError, match="does not exist"):
        load_evaluator(64, tmp_path / "missing")
    with pytest.raises(DataError, match="not an 'evaluator'"):
        load_evaluator(32, SHIPPED / "sequence")
    with pytest.raises(ConfigError, match="no shipped evaluator for 128"):
        load_evaluator(128)


def test_sequence_classifier_fits_its_statistics_and_learns(tmp_path):
    recipe = sequence_recipe(steps=80, batch_size=16, lr=1e-2)
    recipe["model"]["hidden"] = 16
    recipe["train"]["log_every"] = 1
    out = fit(run_config(recipe), tmp_path / "seq", progress=False)
    clf = load_sequence_classifier(out)
    meta = checkpoint.read_meta(out)
    assert meta["statistics"]["frames"] >= 16 * 35 and float(clf.std.min()) > 0
    import csv
    rows = [r for r in csv.DictReader((out / "metrics.csv").open()) if r.get("loss")]
    first, last = (sum(float(r["loss"]) for r in part) / 10 for part in (rows[:10], rows[-10:]))
    assert last < 0.8 * first, (first, last)
