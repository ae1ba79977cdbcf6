"""GAN directions (issue 15 items 5 and 7): InterFaceGAN, GANSpace and SeFa against planted ground
truth and the official formulas, the single-file Direction, the CLI and the tiny reproduction."""

from __future__ import annotations

import json
import sys
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from mien.control import gan_directions as gd
from mien.control.direction import Direction
from mien.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def gan(tmp_path_factory):
    from mien.config import preset_path
    from mien.train import fit, load_run_config

    return fit(load_run_config(preset_path("stylegan", "tiny"), ["train.max_steps=2"]),
               tmp_path_factory.mktemp("gan") / "run", progress=False)


def _cos(a, b) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


# --- InterFaceGAN ----------------------------------------------------------------------------------
def test_interfacegan_recovers_a_planted_hyperplane():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(2000, 16, generator=g)
    normal = torch.randn(16, generator=g)
    normal /= normal.norm()
    scores = codes @ normal + 0.1 * torch.randn(2000, generator=g)
    continuous = gd.InterFaceGAN(ratio=0.1, factor="planted").fit(codes, scores)
    assert _cos(continuous.direction_.vectors[0], normal) > 0.95
    assert continuous.n_selected_ == 400 and continuous.accuracy_ > 0.95
    binary = gd.InterFaceGAN().fit(codes, (scores > 0).long())  # binary labels: every code is used
    assert _cos(binary.direction_.vectors[0], normal) > 0.95 and binary.n_selected_ == 2000
    assert abs(float(binary.direction_.vectors[0].norm()) - 1) < 1e-5
    flipped = gd.InterFaceGAN(ratio=0.1).fit(codes, -scores)  # the sign follows the labels
    assert _cos(flipped.direction_.vectors[0], normal) < -0.95


def test_interfacegan_in_w_plus_keeps_the_space_shape():
    codes = torch.randn(400, 3, 4, generator=torch.Generator().manual_seed(1))
    normal = torch.zeros(3, 4)
    normal[1, 2] = 1
    est = gd.InterFaceGAN("w+", ratio=0.2).fit(codes, (codes * normal).sum((1, 2)))
    assert est.direction_.vectors.shape == (1, 3, 4) and _cos(est.direction_.vectors[0], normal) > 0.95


def test_percentile_selection_keeps_the_most_extreme_of_each_side():
    scores = torch.randperm(1000).double()
    top, bottom = gd.extreme_indices(scores, 0.02)
    assert len(top) == len(bottom) == 20  # int(N * ratio) per side, as the paper's 2 %
    assert set(scores[top].tolist()) == set(range(980, 1000)) and set(scores[bottom].tolist()) == set(range(20))
    assert len(gd.extreme_indices(torch.arange(999.0), 0.02)[0]) == 19
    with pytest.raises(DataError):
        gd.extreme_indices(torch.arange(10.0), 0.02)
    with pytest.raises(ConfigError):
        gd.extreme_indices(scores, 0.7)


def test_conditional_projection_is_orthogonal_to_the_removed_directions():
    g = torch.Generator().manual_seed(2)
    n1, others = torch.randn(12, generator=g), torch.randn(3, 12, generator=g)
    n = gd.orthogonal_to(n1, others)
    assert torch.allclose(others.double() @ n.double(), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert abs(float(n.norm()) - 1) < 1e-6 and _cos(n, n1) > 0
    n2 = others[0]  # one direction: the corrected Eq. 6.35, n1 - <n1,n2>/<n2,n2> n2 (digest §1.9)
    expected = n1 - (n1 @ n2) / (n2 @ n2) * n2
    assert _cos(gd.orthogonal_to(n1, n2[None]), expected) > 1 - 1e-6
    wrong = n1 - (n1 @ n2) / (n1 @ n1) * n1  # the misprint subtracts along n1: still parallel to n1
    assert abs(_cos(gd.orthogonal_to(n1, n2[None]), wrong)) < 0.999
    with pytest.raises(DataError):
        gd.orthogonal_to(n2, n2[None])
    codes = torch.randn(1000, 12, generator=g)
    cond = gd.InterFaceGAN(ratio=0.1, conditions=Direction("w", others[:2])).fit(codes, codes @ n1)
    assert torch.allclose(others[:2] @ cond.direction_.vectors[0], torch.zeros(2), atol=1e-5)


# --- GANSpace and SeFa -----------------------------------------------------------------------------
def test_ganspace_recovers_the_principal_axes_of_a_planted_gaussian():
    g = torch.Generator().manual_seed(3)
    axes, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    stds = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2], dtype=torch.float64)
    w = (torch.randn(20000, 8, generator=g, dtype=torch.float64) * stds) @ axes.T + 7.0
    est = gd.GANSpace(k=4, layers=[0, 1, 2], num_ws=6).fit(w.float())
    for i in range(4):
        assert abs(_cos(est.direction_.vectors[i], axes[:, i])) > 0.99
    assert torch.allclose(est.std_.double(), stds[:4], rtol=0.03)
    assert torch.allclose(est.mean_, torch.full((8,), 7.0), atol=0.1)
    d = est.direction_
    assert d.space == "w" and d.layers == [0, 1, 2] and d.provenance["num_ws"] == 6


def test_sefa_eigendecomposition_equals_svd():
    a = torch.randn(40, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    values_eig, vectors_eig = gd.sefa_eig(a, 5)
    values_svd, vectors_svd = gd.sefa_svd(a, 5)
    assert torch.allclose(values_eig, values_svd, rtol=1e-8)
    assert torch.allclose(vectors_eig, vectors_svd, atol=1e-6)
    assert torch.allclose((a @ vectors_eig.T).norm(dim=0) ** 2, values_eig, rtol=1e-8)  # |A n|^2 (Eq. 2.24)


def test_sefa_follows_the_official_column_normalisation(gan):
    import mien

    model = mien.load(gan)
    layers = [0, 2, model.config.num_ws - 1]
    est = gd.SeFa(k=3, layers=layers).fit(model)
    # genforce/sefa factorize_weight: style weights transposed, concatenated, column-normalised, eig
    synthesis = model.synthesis
    convs = {0: synthesis.layers[0].conv, 2: synthesis.layers[2].conv,
             model.config.num_ws - 1: synthesis.to_rgb[-1].conv}
    weight = np.concatenate([convs[i].affine.weight.detach().double().numpy().T for i in layers], axis=1)
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(weight.dot(weight.T))
    order = np.argsort(-values.real)[:3]
    for j, i in enumerate(order):
        assert abs(_cos(est.direction_.vectors[j], torch.from_numpy(vectors[:, i].real))) > 1 - 1e-5
    assert np.allclose(est.eigenvalues_.numpy(), values.real[order], rtol=1e-4)
    assert est.direction_.layers == layers
    with pytest.raises(ConfigError):
        gd.SeFa(layers=[model.config.num_ws]).fit(model)


def test_parse_layers():
    assert gd.parse_layers("0-3") == [0, 1, 2, 3] and gd.parse_layers("5,0,2") == [0, 2, 5]
    assert gd.parse_layers(None) is None and gd.parse_layers("all") is None
    for bad in ("x", "3-1", "0-9"):
        with pytest.raises(ConfigError):
            gd.parse_layers(bad, 8)


# --- the single-file Direction ---------------------------------------------------------------------
def test_direction_safetensors_round_trip(tmp_path):
    d = Direction("w", torch.randn(3, 8), layers=[0, 1], sign="towards happy", provenance={"method": "x", "num_ws": 4})
    path = d.save(tmp_path / "d.safetensors")
    assert path.is_file() and not (tmp_path / "d.safetensors" / "direction.json").exists()
    back = Direction.load(path)
    assert torch.equal(back.vectors, d.vectors) and back.layers == [0, 1] and back.sign == d.sign
    assert back.provenance == d.provenance


def test_hostile_or_corrupt_direction_files_are_data_errors(tmp_path):
    from safetensors.torch import save as save_tensors

    good = Direction("w", torch.randn(1, 4)).save(tmp_path / "good.safetensors").read_bytes()
    meta = json.loads(good[8:8 + int.from_bytes(good[:8], "little")])["__metadata__"]["direction.json"]
    cases = {
        "garbage": b"\x00\x01garbage",
        "huge_header": (10 ** 12).to_bytes(8, "little") + b"{}",
        "no_metadata": save_tensors({"vectors": torch.randn(1, 4)}),
        "foreign": save_tensors({"vectors": torch.randn(1, 4)}, {"direction.json": json.dumps({"format": "pickle"})}),
        "bad_layers": save_tensors({"vectors": torch.randn(1, 4)},
                                   {"direction.json": meta.replace('"layers": null', '"layers": ["0; rm"]')}),
        "no_vectors": save_tensors({"other": torch.randn(1, 4)}, {"direction.json": meta}),
        "truncated": good[:-5],
    }
    for name, blob in cases.items():
        (tmp_path / f"{name}.safetensors").write_bytes(blob)
        with pytest.raises(DataError):
            Direction.load(tmp_path / f"{name}.safetensors")
    with pytest.raises(DataError, match="does not exist"):
        Direction.load(tmp_path / "missing.safetensors")


# --- command line ----------------------------------------------------------------------------------
def _cli(capsys, *args) -> tuple[int, str]:
    from mien.cli import main

    with mock.patch.object(sys, "argv", ["mien", *map(str, args)]):
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code
    captured = capsys.readouterr()
    return code, captured.err.strip()


def test_cli_fit_and_edit_write_their_files(gan, tmp_path, capsys):
    for method, extra in (("sefa", ["--layers", "0-3", "--k", "3"]), ("ganspace", ["--n", "200", "--layers", "0-2"]),
                          ("interfacegan", ["--factor", "yaw", "--n", "200", "--ratio", "0.1"])):
        out = tmp_path / f"{method}.safetensors"
        code, err = _cli(capsys, "directions", "fit", gan, "--method", method, *extra, "--out", out)
        assert code == 0, err
        d = Direction.load(out)
        assert d.space == "w" and d.provenance["method"] == method
        grid = tmp_path / f"{method}.png"
        code, err = _cli(capsys, "edit", gan, "--direction", out, "--strength", "-2,2", "--steps", "4", "--n", "3",
                         "--out", grid)
        assert code == 0, err
        width, height = Image.open(grid).size
        assert width == 4 * 64 + 5 * 2 and height > 3 * 64  # columns = strengths, rows = faces (scale 2)
    assert Direction.load(tmp_path / "sefa.safetensors").layers == [0, 1, 2, 3]
    yaw = Direction.load(tmp_path / "interfacegan.safetensors")
    code, err = _cli(capsys, "directions", "fit", gan, "--method", "interfacegan", "--factor", "glasses",
                     "--n", "200", "--ratio", "0.1", "--condition", tmp_path / "interfacegan.safetensors",
                     "--out", tmp_path / "c.safetensors")
    assert code == 0, err
    glasses = Direction.load(tmp_path / "c.safetensors")
    code, err = _cli(capsys, "directions", "fit", gan, "--method", "interfacegan", "--factor", "yaw", "--n", "100",
                     "--threshold", "0", "--out", tmp_path / "t.safetensors")
    assert code == 0 and Direction.load(tmp_path / "t.safetensors").provenance["n_selected"] == 100, err
    assert abs(float(glasses.vectors[0] @ yaw.vectors[0])) < 1e-5 and glasses.provenance["conditions"] == 1


def test_cli_bad_inputs_exit_2_with_one_line(gan, tmp_path, capsys):
    import mien

    model = mien.load(gan)
    w_dim, num_ws, size = model.config.w_dim, model.config.num_ws, model.config.image_size
    wrong_size = Direction("w", torch.randn(1, w_dim + 1)).save(tmp_path / "wrong.safetensors")
    out_of_range = Direction("w", torch.randn(1, w_dim), layers=[num_ws + 3]).save(tmp_path / "layers.safetensors")
    good = Direction("w", torch.randn(1, w_dim)).save(tmp_path / "good.safetensors")
    Image.new("RGB", (size * 2, size * 2)).save(tmp_path / "big.png")
    edit = ["edit", gan, "--out", tmp_path / "e.png"]
    cases = [
        ([*edit, "--direction", wrong_size], "shape"),
        ([*edit, "--direction", out_of_range], "out of range"),
        (["directions", "fit", gan, "--method", "sefa", "--layers", f"0-{num_ws + 2}",
          "--out", tmp_path / "x.safetensors"], "W+ layers"),
        ([*edit, "--direction", good, "--image", tmp_path / "big.png"], "no face found"),  # photos are aligned
        ([*edit, "--direction", good, "--strength", "nan,3"], "finite"),
        ([*edit, "--direction", good, "--strength", "-3,inf"], "finite"),
        ([*edit, "--direction", good, "--steps", "1"], "at least 2"),
        ([*edit], "--direction"),
        (["directions", "fit", gan, "--method", "pca", "--out", tmp_path / "x.safetensors"], "unknown method"),
        (["directions", "fit", gan, "--method", "interfacegan", "--factor", "mood", "--n", "50",
          "--out", tmp_path / "x.safetensors"], "cannot be measured"),
    ]
    for args, words in cases:
        code, err = _cli(capsys, *args)
        assert code == 2 and len(err.splitlines()) == 1 and words in err, (args, err)


def test_cli_edit_of_a_vae_and_of_an_image(gan, tmp_path, capsys):
    from mien import zoo
    from mien.control.directions import AxisDirection
    from mien.control.invert import INVERSIONS
    from mien.data.world import WorldDataset
    from mien.report.grid import save_grid

    vae = zoo.path("vae")
    axis = AxisDirection([1], 10).fit().direction_.save(tmp_path / "z1.safetensors")
    save_grid(WorldDataset(1, size=32, seed=5).batch([0])["image"], tmp_path / "face.png", pad=0)
    for extra in ([], ["--image", tmp_path / "face.png"]):
        code, err = _cli(capsys, "edit", vae, "--direction", axis, "--steps", "3", *extra, "--out", tmp_path / "v.png")
        assert code == 0 and Image.open(tmp_path / "v.png").size[0] == 3 * 64 + 4 * 2, err
    import mien

    d = Direction("w", torch.randn(1, mien.load(gan).config.w_dim)).save(tmp_path / "w.safetensors")
    code, err = _cli(capsys, "edit", gan, "--direction", d, "--image", tmp_path / "face.png",
                     "--out", tmp_path / "g.png")
    if "w+" in INVERSIONS:  # a GAN image is inverted first where mien has a W+ inversion
        assert code == 0, err
    else:
        assert code == 2 and "no GAN inversion" in err


# --- the reproduction ------------------------------------------------------------------------------
def test_tiny_reproduce_writes_its_table(gan, tmp_path):
    from mien.experiments import gan_directions as exp

    path = exp.reproduce(gan, tmp_path / "out", "tiny", progress=False)
    text = path.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "method" not in line]
    assert len(rows) == len(exp.METHODS) * len(exp.TARGETS)
    results = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    for r in results:
        assert np.isfinite(r["slope"]) and r["leakage"] >= 0 and -1 <= r["csim_mien"] <= 1 + 1e-6
        assert r["method"] == "interfacegan" or r["slope"] >= 0  # components signed so that + raises the target
        assert (r["index"] is None) == (r["method"] == "interfacegan")
        assert r["index"] is None or 0 <= r["index"] < exp.PRESETS["tiny"].k
    assert all((tmp_path / "out" / "grids" / f"{m}.png").is_file() for m in exp.METHODS)
    assert "no GAN inversion" in text or "Inversion alone" in text


def test_reproduce_scores_edits_against_the_world_when_an_inversion_exists(gan, tmp_path, monkeypatch):
    from mien.control.invert import INVERSIONS
    from mien.experiments import gan_directions as exp

    def mean_face(model, x, **options):  # a stand-in W+ inversion: every face maps to w_avg
        return model.broadcast(model.w_avg[None].expand(len(x), -1))

    monkeypatch.setitem(INVERSIONS, "w+", mean_face)
    monkeypatch.setattr(exp, "TARGETS", ("yaw", "glasses", "happy"))
    monkeypatch.setattr(exp, "METHODS", ("sefa",))
    text = exp.reproduce(gan, tmp_path / "out", "tiny", progress=False, layers="0-3").read_text()
    assert "W+ layers moved: [0, 1, 2, 3]" in text and "Inversion alone" in text
    for r in json.loads((tmp_path / "out" / "results.json").read_text())["rows"]:
        assert 0 <= r["lpips_to_world"] and 0 <= r["nme_to_world"] and 0 <= r["lpips_inversion"]


def test_world_target_changes_only_the_target():
    from mien.data.world import EXPRESSIONS, WorldDataset
    from mien.experiments.gan_directions import _world_target

    f = WorldDataset(3, size=32, seed=1).draw(range(3))
    edited = {"glasses": torch.tensor([0.9, 0.1, 0.6]), "happy": torch.tensor([0.8, 0.2, 0.9]),
              "intensity": torch.tensor([0.5, 0.5, 1.4])}
    yaw = _world_target(f, "yaw", edited, torch.tensor([10.0, -100.0, 0.0]))
    assert torch.allclose(yaw["yaw"], (f["yaw"] + torch.tensor([10.0, -100.0, 0.0])).clamp(-35, 35))
    assert all(torch.equal(yaw[k], f[k]) for k in f if k != "yaw")
    assert _world_target(f, "glasses", edited, None)["glasses"].tolist() == [1, 0, 1]
    happy = _world_target(f, "happy", edited, None)
    h = EXPRESSIONS.index("happy")
    assert happy["expression"][0] == h and happy["expression"][2] == h and happy["expression"][1] == f["expression"][1]
    assert float(happy["intensity"][2]) == 1.0


def test_edit_strengths_in_sd_units_are_raw_strengths_times_the_sampled_spread(gan, tmp_path, capsys):
    import mien
    from mien.cli.directions import sd_scale
    from mien.control.direction import traverse

    model = mien.load(gan)
    v = torch.randn(1, model.config.w_dim)
    d = Direction("w", v)
    w = gd.sample_codes(model, 1000, torch.Generator().manual_seed(0))["w"]
    assert sd_scale(model, d) == pytest.approx(float((w @ (v[0] / v[0].norm())).std()), rel=1e-5)
    codes = gd.sample_codes(model, 2, torch.Generator().manual_seed(1))["w+"]
    unit = Direction("w", v / v.norm() * sd_scale(model, d))
    raw = Direction("w", v / v.norm())
    noise = model.noise_maps(2, torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(traverse(model, codes, unit, [2.0], noise=noise),
                              traverse(model, codes, raw, [2.0 * sd_scale(model, d)], noise=noise), atol=1e-5)
    d.save(tmp_path / "d.safetensors")
    code, err = _cli(capsys, "edit", gan, "--direction", tmp_path / "d.safetensors", "--units", "sd", "--steps", "3",
                     "--n", "2", "--out", tmp_path / "sd.png")
    assert code == 0 and (tmp_path / "sd.png").is_file(), err
    code, err = _cli(capsys, "edit", gan, "--direction", tmp_path / "d.safetensors", "--units", "sigma",
                     "--out", tmp_path / "x.png")
    assert code == 2 and "--units" in err and len(err.splitlines()) == 1
