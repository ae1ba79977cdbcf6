"""The layout readers (mien.data.formats) on tiny world-rendered data sets in each layout: the
right images, factors, splits and landmarks, sample dicts, `mien data inspect`, and bad input."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from data_layouts import (CELEBA_ATTRS, FER_CODE, celeba_attrs, five_points, make_affectnet, make_celeba, make_fer,
                          make_ffhq, world)
from mien.cli import app
from mien.data.formats import detect_layout, open_layout
from mien.data.formats.dataset import LayoutDataset
from mien.data.source import DataConfig, make_dataset
from mien.data.world import EXPRESSIONS
from mien.errors import ConfigError, DataError


@pytest.mark.parametrize("csv_form", [False, True], ids=["txt", "csv"])
def test_celeba_attributes_splits_and_landmarks(tmp_path, csv_form):
    names, f, lms = make_celeba(tmp_path, csv_form=csv_form)
    assert detect_layout(tmp_path) == "celeba"
    lay = open_layout(tmp_path)
    assert [r.name for r in lay.records] == names
    assert [x.name for x in lay.factors] == list(CELEBA_ATTRS) and all(x.kind == "binary" for x in lay.factors)
    for i, r in enumerate(lay.records):
        assert r.factors == celeba_attrs(f, i)
        assert r.split == ("train", "val", "test")[i % 3]
        np.testing.assert_allclose(r.landmarks, five_points(lms[i]), atol=0.5)
    sample = LayoutDataset(lay, size=32)[1]
    assert sample["image"].shape == (3, 32, 32) and -1 <= sample["image"].min() < sample["image"].max() <= 1
    assert sample["attributes"].tolist() == [float(celeba_attrs(f, 1)[a]) for a in CELEBA_ATTRS]
    assert len(LayoutDataset(lay, size=32, split="val")) == 2


def test_celeba_rows_and_images_that_do_not_match_are_counted(tmp_path):
    make_celeba(tmp_path, n=5)
    (tmp_path / "img_align_celeba" / "000002.jpg").unlink()
    Image.new("RGB", (8, 8)).save(tmp_path / "img_align_celeba" / "999999.jpg")
    lay = open_layout(tmp_path)
    assert len(lay.records) == 4
    assert lay.skipped == {"attribute rows without an image": 1, "images without attributes": 1}
    assert lay.examples["images without attributes"] == ["999999.jpg"]


def test_celeba_attribute_row_of_the_wrong_length_is_one_clear_error(tmp_path):
    make_celeba(tmp_path, n=3)
    path = tmp_path / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"list_attr_celeba.txt: row 2 \(000002.jpg\) has 5 fields, 6 expected"):
        open_layout(tmp_path)


def test_ffhq_splits_and_landmarks_from_its_json(tmp_path):
    lms = make_ffhq(tmp_path)
    assert detect_layout(tmp_path) == "ffhq"
    lay = open_layout(tmp_path)
    assert [r.split for r in lay.records] == ["train", "val", "train", "val"] and lay.factors == []
    np.testing.assert_allclose(np.stack([r.landmarks for r in lay.records]), lms, rtol=1e-6)
    sample = LayoutDataset(lay, size=32)[0]  # centre square of a square image: landmarks scale by 1/64
    np.testing.assert_allclose(sample["landmarks2d"].numpy(), lms[0] / 64, atol=1e-5)
    bare = tmp_path / "bare"
    make_ffhq(bare, n=2, with_json=False)
    assert detect_layout(bare) == "ffhq" and "no ffhq-dataset-v2.json" in open_layout(bare).notes[0]


def test_affectnet_expressions_valence_arousal_and_skips(tmp_path):
    f, lms = make_affectnet(tmp_path)
    assert detect_layout(tmp_path) == "affectnet"
    lay = open_layout(tmp_path)
    assert [x.name for x in lay.factors] == ["expression", "valence", "arousal"]
    assert lay.skipped == {"expression 8 (none)": 1, "expression 9 (uncertain)": 1, "expression 10 (no face)": 1,
                           "rows without an image": 1}
    assert [r.split for r in lay.records] == ["train"] * 3 + ["val"] * 2
    for i, r in enumerate(lay.records):
        assert r.factors["expression"] == f["expression"][i]
        assert r.factors["valence"] == pytest.approx(f["intensity"][i] - 0.5, abs=1e-3)
        np.testing.assert_allclose(r.landmarks, lms[i], atol=0.01)
    sample = LayoutDataset(lay, size=48)[2]
    assert sample["label"] == f["expression"][2] and sample["factors"]["expression"] == f["expression"][2]
    # the crop is the square of 1.5 box sides around the box; the landmarks follow it
    box = lay.records[2].box
    side = max(box[2] - box[0], box[3] - box[1]) * 1.5
    corner = (box[:2] + box[2:]) / 2 - side / 2
    np.testing.assert_allclose(sample["landmarks2d"].numpy(), (lms[2] - corner) / side, atol=1e-3)


def test_affectnet_csv_without_a_column_is_one_clear_error(tmp_path):
    make_affectnet(tmp_path, drop=("valence",))
    with pytest.raises(DataError, match="training.csv has no column 'valence'"):
        open_layout(tmp_path)


def test_fer2013_pixels_labels_and_usage(tmp_path):
    grey, f = make_fer(tmp_path)
    assert detect_layout(tmp_path) == "fer2013"
    lay = open_layout(tmp_path)
    assert lay.skipped == {"rows whose pixels are not 48 x 48 grey values": 1}
    assert [r.split for r in lay.records] == ["train", "val", "test", "train", "val"]
    for i, r in enumerate(lay.records):
        assert r.factors["expression"] == FER_CODE.get(EXPRESSIONS[f["expression"][i]], 6)
        np.testing.assert_array_equal(r.rgb()[..., 0], grey[i])
    sample = LayoutDataset(lay, size=48)[0]
    expected = torch.from_numpy(grey[0].astype(np.float32) / 127.5 - 1)
    torch.testing.assert_close(sample["image"][1], expected)


def test_folder_layout_is_the_fallback_and_data_path_reads_every_layout(tmp_path):
    images, _, _ = world(3, 32)
    for i, image in enumerate(images):
        (tmp_path / "plain" / ("a", "b", "a")[i]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "plain" / ("a", "b", "a")[i] / f"{i}.png")
    assert detect_layout(tmp_path / "plain") == "folder"
    lay = open_layout(tmp_path / "plain")
    assert [r.factors["class"] for r in lay.records] == [0, 0, 1]
    make_celeba(tmp_path / "celeba", n=3)
    ds = make_dataset(DataConfig(source="folder", path=str(tmp_path / "celeba"), size=32))
    assert isinstance(ds, LayoutDataset) and len(ds) == 3 and ds[0]["image"].shape == (3, 32, 32)


def test_unknown_layout_and_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="layout 'celebahq' is not known"):
        open_layout(tmp_path, "celebahq")
    with pytest.raises(DataError, match="does not exist"):
        open_layout(tmp_path / "nope")
    with pytest.raises(DataError, match="no list_attr_celeba"):
        open_layout(tmp_path, "celeba")


def test_mien_data_inspect_says_layout_counts_splits_factors_problems(tmp_path):
    make_affectnet(tmp_path)
    result = CliRunner().invoke(app, ["data", "inspect", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "layout: affectnet" in out and "images: 5" in out and "splits: train 3, val 2" in out
    assert "expression (categorical): neutral, happy" in out and "valence (continuous): -1..1" in out
    assert "landmarks: 68 points" in out and "problems: 4 skipped" in out and "1 expression 9 (uncertain)" in out
