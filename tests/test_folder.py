import csv

import numpy as np
import pytest
import torch
from PIL import Image

from mien.data.factors import Factor
from mien.data.folder import FolderDataset, export_samples, landmark_columns
from mien.errors import ConfigError, DataError, OutputError

SCHEMA = [
    Factor("expression", "categorical", values=("neutral", "happy", "sad")),
    Factor("glasses", "binary", values=("no", "yes")),
    Factor("yaw", "continuous", range=(-1.0, 1.0)),
]


def make_samples(n=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(n):
        expression = i % 3
        samples.append(
            {
                "image": torch.rand(3, size, size, generator=g) * 2 - 1,
                # categorical values given as labels and as codes must both export as codes
                "factors": {
                    "expression": SCHEMA[0].values[expression] if i % 2 else expression,
                    "glasses": i % 2,
                    "yaw": float(torch.rand(1, generator=g) * 2 - 1),
                },
                "landmarks2d": torch.rand(68, 2, generator=g),
                "landmarks3d": torch.randn(68, 3, generator=g),
            }
        )
    return samples


def save_rgb(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.fixture
def exported(tmp_path):
    samples = make_samples()
    walk = np.arange(12.0).reshape(2, 2, 3)
    out = export_samples(samples, SCHEMA, tmp_path / "set", progress=False, sequences={"walk": walk})
    return samples, out


def test_round_trip_preserves_everything(exported):
    samples, out = exported
    ds = FolderDataset(out)
    assert len(ds) == len(samples)
    assert ds.factors == SCHEMA
    assert [p.name for p in ds.files] == [f"{i:06d}.png" for i in range(len(samples))]
    for i, s in enumerate(samples):
        got = ds[i]
        assert set(got) == {"image", "factors", "label", "attributes", "landmarks2d", "landmarks3d"}
        assert got["image"].dtype == torch.float32 and got["image"].shape == (3, 16, 16)
        assert (got["image"] - s["image"]).abs().max() <= 1 / 127.5
        expression = i % 3
        assert got["factors"] == {"expression": expression, "glasses": i % 2, "yaw": s["factors"]["yaw"]}
        assert got["label"] == expression
        assert got["attributes"].tolist() == [float(i % 2)]
        assert torch.equal(got["landmarks2d"], s["landmarks2d"])
        assert torch.equal(got["landmarks3d"], s["landmarks3d"])
    np.testing.assert_array_equal(np.load(out / "sequences.npz")["walk"], np.arange(12.0).reshape(2, 2, 3))
    assert sorted(p.name for p in out.iterdir()) == ["factors.json", "images", "metadata.csv", "sequences.npz"]


def test_metadata_columns_and_codes(exported):
    _, out = exported
    rows = read_csv(out / "metadata.csv")
    landmarks = landmark_columns("landmarks2d", 68) + landmark_columns("landmarks3d", 68)
    assert rows[0] == ["file_name", "expression", "glasses", "yaw", *landmarks]
    assert rows[0][4:6] == ["lm2d_x0", "lm2d_x1"] and rows[0][4 + 68] == "lm2d_y0" and rows[0][-1] == "lm3d_z67"
    assert [r[1] for r in rows[1:]] == ["0", "1", "2", "0", "1", "2"]


def test_dataloader_collates_samples(exported):
    _, out = exported
    batch = next(iter(torch.utils.data.DataLoader(FolderDataset(out), batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["landmarks2d"].shape == (4, 68, 2)
    assert batch["label"].tolist() == [0, 1, 2, 0]


def test_inferred_schema_without_factors_json(exported):
    _, out = exported
    (out / "factors.json").unlink()
    rows = read_csv(out / "metadata.csv")
    rows[0].append("mood")
    for k, r in enumerate(rows[1:]):
        r.append(["calm", "angry"][k % 2])
    rows[0].append("constant")
    for r in rows[1:]:
        r.append("7")
    write_csv(out / "metadata.csv", rows)
    ds = FolderDataset(out)
    f = {x.name: x for x in ds.factors}
    assert list(f) == ["expression", "glasses", "yaw", "mood"]
    assert f["expression"] == Factor("expression", "categorical", values=("0", "1", "2"))
    assert f["glasses"].kind == "binary"
    yaws = [float(r[3]) for r in rows[1:]]
    assert f["yaw"].kind == "continuous" and f["yaw"].range == (min(yaws), max(yaws))
    assert f["mood"].values == ("angry", "calm")
    assert [ds[i]["factors"]["mood"] for i in range(3)] == [1, 0, 1]
    assert ds[2]["label"] == 2 and ds[1]["attributes"].tolist() == [1.0]


def test_labels_as_strings_and_label_factor(exported):
    _, out = exported
    rows = read_csv(out / "metadata.csv")
    for r in rows[1:]:
        r[1] = SCHEMA[0].values[int(r[1])]
    write_csv(out / "metadata.csv", rows)
    ds = FolderDataset(out, label_factor="glasses")
    assert [ds[i]["factors"]["expression"] for i in range(4)] == [0, 1, 2, 0]
    assert [ds[i]["label"] for i in range(4)] == [0, 1, 0, 1]
    with pytest.raises(ConfigError, match="continuous"):
        FolderDataset(out, label_factor="yaw")
    with pytest.raises(ConfigError, match="not a factor"):
        FolderDataset(out, label_factor="age")


def test_export_without_factors_or_landmarks(tmp_path):
    samples = [{"image": torch.zeros(1, 8, 8)} for _ in range(3)]
    out = export_samples(samples, None, tmp_path / "plain", progress=True)
    ds = FolderDataset(out)
    assert ds.factors == [] and len(ds) == 3
    assert set(ds[0]) == {"image"} and ds[0]["image"].shape == (3, 8, 8)
    assert not (out / "sequences.npz").exists()


def test_plain_folder_recursive_sorted_and_converted(tmp_path):
    root = tmp_path / "faces"
    save_rgb(root / "b.png", np.full((8, 8, 3), 255))
    save_rgb(root / "a" / "z.jpg", np.zeros((8, 8, 3)))
    Image.new("L", (8, 8), 128).save(root / "c.bmp")
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(root / "d.webp", lossless=True)
    save_rgb(root / ".hidden" / "x.png", np.zeros((8, 8, 3)))
    (root / "notes.txt").write_text("not an image")
    ds = FolderDataset(root)
    assert [p.relative_to(root).as_posix() for p in ds.files] == ["a/z.jpg", "b.png", "c.bmp", "d.webp"]
    assert ds.factors == [] and set(ds[0]) == {"image"}
    grey = ds[2]["image"]
    assert grey.shape == (3, 8, 8) and torch.allclose(grey, torch.full_like(grey, 128 / 127.5 - 1), atol=1e-6)
    red = ds[3]["image"]
    assert red.shape == (3, 8, 8) and red[0].min() == 1 and red[1].max() == -1
    assert ds[1]["image"].min() == 1


def test_class_subfolders(tmp_path):
    for cls, n in (("happy", 2), ("angry", 3)):
        for i in range(n):
            save_rgb(tmp_path / cls / f"{i}.png", np.zeros((6, 6, 3)))
    ds = FolderDataset(tmp_path)
    assert ds.factors == [Factor("class", "categorical", values=("angry", "happy"))]
    assert [ds[i]["label"] for i in range(len(ds))] == [0, 0, 0, 1, 1]
    assert ds[4]["factors"] == {"class": 1}


def test_resize_and_center_crop_moves_landmarks(tmp_path):
    root = tmp_path / "wide"
    pixels = np.zeros((20, 40, 3))
    pixels[:, :20, 0] = 255  # left half red, right half blue
    pixels[:, 20:, 2] = 255
    save_rgb(root / "images" / "w.png", pixels)
    xs = [0.25, 0.5, 0.75] + [0.5] * 65
    ys = [0.5, 0.1, 0.9] + [0.5] * 65
    write_csv(root / "metadata.csv", [["file_name", *landmark_columns("landmarks2d", 68)], ["images/w.png", *xs, *ys]])
    sample = FolderDataset(root, size=10)[0]
    assert sample["image"].shape == (3, 10, 10)
    assert sample["image"][0, 5, 0] == 1 and sample["image"][2, 5, 9] == 1
    np.testing.assert_allclose(sample["landmarks2d"][:3].numpy(), [[0.0, 0.5], [0.5, 0.1], [1.0, 0.9]], atol=1e-6)
    squashed = FolderDataset(root, size=10, crop="none")[0]
    assert squashed["image"].shape == (3, 10, 10)
    np.testing.assert_allclose(squashed["landmarks2d"][:3].numpy(), [[0.25, 0.5], [0.5, 0.1], [0.75, 0.9]], atol=1e-6)
    assert FolderDataset(root)[0]["image"].shape == (3, 20, 40)
    with pytest.raises(ConfigError):
        FolderDataset(root, crop="random")


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        FolderDataset(tmp_path / "nope")
    assert "nope" in str(e.value)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match="is a file"):
        FolderDataset(tmp_path / "file.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images .* found in .*empty; put images there"):
        FolderDataset(tmp_path / "empty")


def test_metadata_errors(exported):
    _, out = exported
    rows = read_csv(out / "metadata.csv")

    write_csv(out / "metadata.csv", [["name", *rows[0][1:]], *rows[1:]])
    with pytest.raises(DataError, match="no 'file_name' column"):
        FolderDataset(out)

    bad = [r[:] for r in rows]
    bad[3][0] = "images/gone.png"
    write_csv(out / "metadata.csv", bad)
    with pytest.raises(DataError, match="line 4: image .*gone.png does not exist"):
        FolderDataset(out)

    bad = [r[:] for r in rows]
    bad[2][3] = "left"
    write_csv(out / "metadata.csv", bad)
    with pytest.raises(DataError, match="line 3: yaw value 'left' is not a number"):
        FolderDataset(out)

    bad = [r[:] for r in rows]
    bad[5][1] = "surprised"
    write_csv(out / "metadata.csv", bad)
    with pytest.raises(DataError, match="metadata.csv line 6: .*'expression' has no value 'surprised'"):
        FolderDataset(out)

    bad = [r[:] for r in rows]
    bad[1][10] = "?"
    write_csv(out / "metadata.csv", bad)
    with pytest.raises(DataError, match="line 2: lm2d_x6 value '\\?' is not a number"):
        FolderDataset(out)


def test_corrupt_image_named_at_load_and_skipped_up_front(exported):
    _, out = exported
    broken = out / "images" / "000002.png"
    broken.write_bytes(broken.read_bytes()[:60])  # truncated PNG
    ds = FolderDataset(out)
    ds[1]
    with pytest.raises(DataError, match="cannot read image .*000002.png"):
        ds[2]
    ok = FolderDataset(out, skip_bad=True)
    assert ok.skipped == [broken] and len(ok) == 5
    assert [ok[i]["label"] for i in range(5)] == [0, 1, 0, 1, 2]  # rows stay aligned with their images
    for p in (out / "images").iterdir():
        p.write_bytes(b"not an image")
    with pytest.raises(DataError, match="none of the 6 images"):
        FolderDataset(out, skip_bad=True)


def test_export_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="not a mien export .*thesis.tex"):
        export_samples(make_samples(2), SCHEMA, tmp_path / "mine", progress=False)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        export_samples(make_samples(2), SCHEMA, tmp_path / "f", progress=False)


def test_reexport_replaces_previous_export(exported):
    _, out = exported
    export_samples(make_samples(10, seed=1), SCHEMA, out, n=3, progress=False)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert not (out / "sequences.npz").exists()
    assert len(FolderDataset(out)) == 3


def test_interrupted_export_leaves_no_metadata(exported):
    _, out = exported

    def stream():
        yield from make_samples(2)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_samples(stream(), SCHEMA, out, progress=False)
    assert not (out / "metadata.csv").exists()
    assert [p.name for p in out.rglob(".*")] == [".mien-incomplete"]  # no temp file, the marker only
    with pytest.raises(DataError, match="incomplete mien export"):  # before, read as a plain folder
        FolderDataset(out)
    export_samples(make_samples(3), SCHEMA, out, progress=False)  # exporting again completes it
    assert len(FolderDataset(out)) == 3 and not (out / ".mien-incomplete").exists()


def test_two_exports_into_one_folder_cannot_mix(tmp_path):
    """Issue 20 item 3: two concurrent exports into one folder both succeeded and left images that
    disagree with metadata.csv. The folder is claimed: the second writer is refused."""
    from mien.io import claim_folder

    out = tmp_path / "data"
    with claim_folder(out):  # another writer holds the folder (its lock, as another process's would be)
        with pytest.raises(OutputError, match="another mien process is writing"):
            export_samples(make_samples(2), SCHEMA, out, progress=False)
        with pytest.raises(DataError, match="incomplete"):
            FolderDataset(out)
    export_samples(make_samples(2), SCHEMA, out, progress=False)
    assert len(FolderDataset(out)) == 2


def test_export_rejects_bad_samples(tmp_path):
    samples = make_samples(2)
    del samples[1]["factors"]["yaw"]
    with pytest.raises(DataError, match="sample 1 has no value for factor 'yaw'"):
        export_samples(samples, SCHEMA, tmp_path / "a", progress=False)
    samples = make_samples(2)
    samples[0]["image"][0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="sample 0: image contains NaN"):
        export_samples(samples, SCHEMA, tmp_path / "b", progress=False)
    samples = make_samples(2)
    del samples[1]["landmarks3d"]
    with pytest.raises(DataError, match="sample 1 has no landmarks3d"):
        export_samples(samples, SCHEMA, tmp_path / "c", progress=False)
    with pytest.raises(DataError, match="no samples"):
        export_samples([], SCHEMA, tmp_path / "d", progress=False)
    with pytest.raises(DataError, match="sequence 'ragged'"):
        export_samples(make_samples(1), SCHEMA, tmp_path / "e", progress=False, sequences={"ragged": [[1, 2], [3]]})
