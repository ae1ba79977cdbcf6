"""`mien data prepare`: every layout to mien's folder layout, resumable without redoing or
duplicating files, bad images counted and listed, and the result trains with data.path=OUT."""

import csv
import io
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from data_layouts import CELEBA_ATTRS, celeba_attrs, make_affectnet, make_celeba, make_fer, make_ffhq
from mien.cli import app
from mien.config import preset_path
from mien.data import prepare as prep
from mien.data.folder import FolderDataset
from mien.data.source import DataConfig, make_dataset
from mien.errors import ConfigError, OutputError


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_celeba_prepared_with_its_five_point_alignment_reads_back(tmp_path):
    names, f, _ = make_celeba(tmp_path / "src", n=6)
    report = prep.prepare(tmp_path / "src", tmp_path / "out", size=32, align=True, workers=1, progress=False)
    assert (report.layout, report.kept, report.written, report.reused) == ("celeba", 6, 6, 0)
    meta = rows(tmp_path / "out" / "metadata.csv")
    assert [r["split"] for r in meta] == ["train", "val", "test"] * 2
    ds = FolderDataset(tmp_path / "out", size=32)
    assert [x.name for x in ds.factors] == list(CELEBA_ATTRS)
    for i in range(6):
        sample = ds[i]
        assert sample["image"].shape == (3, 32, 32)
        assert sample["factors"] == celeba_attrs(f, i)
    val = FolderDataset(tmp_path / "out", split="val")
    assert [p.name for p in val.files] == ["000001.png", "000004.png"] and val[1]["factors"] == celeba_attrs(f, 4)
    test = make_dataset(DataConfig(source="folder", path=str(tmp_path / "out"), size=32, split="test"))
    assert len(test) == 2
    with pytest.raises(ConfigError, match="has no split 'dev'; its splits: test, train, val"):
        FolderDataset(tmp_path / "out", split="dev")


@pytest.mark.parametrize("maker,layout,n", [(make_ffhq, "ffhq", 4), (make_affectnet, "affectnet", 5),
                                            (make_fer, "fer2013", 5)])
def test_every_layout_prepares_into_the_folder_layout(tmp_path, maker, layout, n):
    maker(tmp_path / "src")
    report = prep.prepare(tmp_path / "src", tmp_path / "out", size=32, workers=1, progress=False)
    assert report.layout == layout and report.kept == n
    ds = FolderDataset(tmp_path / "out", size=32)
    assert len(ds) == n and ds[0]["image"].shape == (3, 32, 32)
    if layout in ("ffhq", "affectnet"):  # annotated 68-point landmarks are carried into the crops
        assert ds[0]["landmarks2d"].shape == (68, 2) and 0 < ds[0]["landmarks2d"].min()


def test_prepare_resumes_after_an_interruption_without_redoing_files(tmp_path, monkeypatch):
    make_affectnet(tmp_path / "src", n=5)
    done, real = [], prep._prepare_one

    def interrupted(i, *args):
        if len(done) == 3:
            raise KeyboardInterrupt
        done.append(i)
        return real(i, *args)

    monkeypatch.setattr(prep, "_prepare_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(tmp_path / "src", tmp_path / "out", size=32, workers=1, progress=False)
    images = sorted((tmp_path / "out" / "images").iterdir())
    assert [p.name for p in images] == ["000000.png", "000001.png", "000002.png"]
    assert not (tmp_path / "out" / "metadata.csv").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in images}
    monkeypatch.setattr(prep, "_prepare_one", real)
    report = prep.prepare(tmp_path / "src", tmp_path / "out", size=32, workers=1, progress=False)
    assert (report.reused, report.written, report.kept) == (3, 2, 5)
    assert {p.name: p.stat().st_mtime_ns for p in images} == stamps  # nothing redone
    assert len(list((tmp_path / "out" / "images").iterdir())) == 5
    assert [r["file_name"] for r in rows(tmp_path / "out" / "metadata.csv")] == [f"images/{i:06d}.png" for i in range(5)]
    again = prep.prepare(tmp_path / "src", tmp_path / "out", size=32, workers=1, progress=False)
    assert (again.reused, again.written) == (5, 0)


def test_other_options_or_a_foreign_folder_are_refused(tmp_path):
    make_fer(tmp_path / "src")
    prep.prepare(tmp_path / "src", tmp_path / "out", size=32, workers=1, progress=False)
    with pytest.raises(OutputError, match="prepared with other options"):
        prep.prepare(tmp_path / "src", tmp_path / "out", size=48, workers=1, progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(OutputError, match="not empty and was not written by mien data prepare"):
        prep.prepare(tmp_path / "src", tmp_path / "mine", size=32, workers=1, progress=False)


def test_bad_images_are_counted_listed_and_the_rest_prepared_in_parallel(tmp_path):
    make_celeba(tmp_path / "src", n=6)
    folder = tmp_path / "src" / "img_align_celeba"
    data = (folder / "000002.jpg").read_bytes()
    (folder / "000002.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    Image.new("CMYK", (64, 64), (10, 200, 30, 0)).save(folder / "000003.jpg")  # CMYK: read fine
    big = io.BytesIO()
    Image.new("1", (9000, 100)).save(big, format="PNG")
    (folder / "000004.jpg").write_bytes(big.getvalue())  # a 9000 px wide image (PNG bytes, .jpg name)
    report = prep.prepare(tmp_path / "src", tmp_path / "out", size=32, workers=2, progress=False)
    assert report.kept == 4 and report.skipped == {"unreadable": 2}
    listed = rows(tmp_path / "out" / "skipped.csv")
    assert [(r["name"], r["reason"]) for r in listed] == [("000002.jpg", "unreadable"), ("000004.jpg", "unreadable")]
    assert "truncated or corrupt" in listed[0]["detail"] and "downscale it first" in listed[1]["detail"]
    assert len(FolderDataset(tmp_path / "out")) == 4
    (folder / "000002.jpg").write_bytes(data)  # the user replaces the broken file: it is retried
    again = prep.prepare(tmp_path / "src", tmp_path / "out", size=32, workers=1, progress=False)
    assert (again.written, again.kept, again.skipped) == (2, 5, {"unreadable": 1})


def test_degenerate_annotated_landmarks_are_a_counted_skip(tmp_path):
    make_affectnet(tmp_path / "src", n=5, extra_codes=(), missing=0)
    path = tmp_path / "src" / "training.csv"
    lines = path.read_text().splitlines()
    cells = next(csv.reader([lines[1]]))
    cells[5] = ";".join(["10.0"] * 136)  # every point at one place
    lines[1] = ",".join(f'"{c}"' for c in cells)
    path.write_text("\n".join(lines) + "\n")
    report = prep.prepare(tmp_path / "src", tmp_path / "out", size=32, align=True, workers=1, progress=False)
    assert report.kept == 4 and report.skipped == {"bad landmarks": 1}


def test_faces_not_found_are_skipped_and_listed(tmp_path):
    pytest.importorskip("mediapipe")
    make_ffhq(tmp_path / "src", n=3, with_json=False)
    Image.new("RGB", (64, 64), (90, 160, 40)).save(tmp_path / "src" / "thumbnails64x64" / "00000" / "00009.png")
    report = prep.prepare(tmp_path / "src", tmp_path / "out", size=32, align=True, workers=1, progress=False)
    assert report.kept == 3 and report.skipped == {"no face found": 1}
    assert rows(tmp_path / "out" / "skipped.csv")[0]["name"].endswith("00009.png")
    assert FolderDataset(tmp_path / "out")[0]["landmarks2d"].shape == (68, 2)  # detected landmarks kept


def test_cli_prepare_then_train_on_data_path(tmp_path):
    make_celeba(tmp_path / "src", n=8)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "prepare", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
                                 "--size", "32", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "prepared 8 celeba images" in result.output
    from mien.train import fit, load_run_config

    cfg = load_run_config(preset_path("vae", "tiny"), [f"data.path={tmp_path / 'out'}", "data.batch_size=4",
                                                       "train.max_steps=2"])
    run = fit(cfg, tmp_path / "run", progress=False)
    assert json.loads((run / "meta.json").read_text())["steps"] == 2


def test_align_without_the_landmarks_extra_is_one_clear_error(tmp_path, monkeypatch):
    import sys

    make_fer(tmp_path / "src")  # no annotated landmarks: --align needs detection
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"needs mediapipe 0.10.14: pip install 'mien\[landmarks\]'"):
        prep.prepare(tmp_path / "src", tmp_path / "out", size=32, align=True, workers=1, progress=False)
    assert not (tmp_path / "out").exists()
