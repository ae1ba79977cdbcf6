"""Haas Papers I-II on the world (issue 16, H1): the grid tensor's layout, the stacked model and its
transfer errors against a planted multilinear grid, masked-HOOI imputation, the safe model files,
`mien control tensor fit / transfer` (bad inputs: one line, exit 2) and `mien reproduce haas-tensor`."""

import json

import pytest
import torch

from model_helpers import mien_main  # noqa: F401 (fixtures)

from mien.control import gan_invert
from mien.control.tensor_edit import impute
from mien.control.tensor_grid import GridSpec, drop_neutral, grid_tensor
from mien.control.tensor_model import planted_tensor
from mien.control.tensor_stack import StackedTensorModel, load_model, save_model, transfer_errors
from mien.errors import DataError

ZOO_GAN = "src/mien/zoo/weights/stylegan"
TINY = dict(persons=3, emotions=("happy",), intensities=(0.5, 1.0), views=(-20.0, 20.0))


def planted_p1(persons=6, latent=(4, 8), noise=0.0, seed=0, affine=None):
    """A P-I layout grid (D x P x (1 + E I) x R) of a planted multilinear model. ``affine`` (k x 3,
    rows summing to one): k more persons whose identity codes are those affine combinations of the
    first three's (then the rank-one parameters of a held-out face are unique, not only its code)."""
    _, truth = planted_tensor(persons=persons, dim=latent[0] * latent[1], seed=seed)
    if affine is not None:
        truth["identity"] = torch.cat([truth["identity"][:3], affine @ truth["identity"][:3]])
    g = torch.Generator().manual_seed(seed + 1)
    k = truth["directions"].shape[1]
    codes = torch.cat([torch.randn(1, k, generator=g, dtype=torch.float64),
                       (truth["apathy"] + truth["levels"][None, :, None] * truth["directions"][:, None, :]).reshape(-1, k)])
    grid = truth["mean"][:, None, None, None] + torch.einsum("dakv,pa,ck,rv->dpcr", truth["core"], truth["identity"],
                                                             codes, truth["view"])
    return grid + noise * torch.randn(grid.shape, generator=g, dtype=torch.float64)


def test_grid_tensor_puts_every_world_cell_in_its_place_and_names_modes_from_the_schema():
    spec = GridSpec(layout="p1", **TINY)
    data = spec.dataset(32)
    f = data.draw(range(len(data)))
    # a code that spells its cell: (identity, expression, intensity, yaw) in 4 x 2 latents
    codes = torch.stack([f["identity"].double(), f["expression"].double(), f["intensity"].double(),
                         f["yaw"].double()], 1)[:, None].expand(-1, 2, -1).reshape(len(data), 2, 4)
    t, modes, latent = grid_tensor(codes, data)
    assert modes == ["identity", "expression", "yaw"] and latent == (2, 4) and t.shape == (8, 3, 3, 2)
    assert t[0].tolist() == [[[p] * 2] * 3 for p in range(3)]  # identity coordinate
    assert t[1, 0, :, 0].tolist() == [0.0, 1.0, 1.0] and t[2, 0, :, 1].tolist() == [0.0, 0.5, 1.0]
    assert t[3, 0, 0].tolist() == [-20.0, 20.0]
    t2, modes2 = drop_neutral(t, spec)
    assert modes2 == ["identity", "expression", "intensity", "yaw"] and t2.shape == (8, 3, 1, 2, 2)
    assert t2[2, 1, 0, :, 0].tolist() == [0.5, 1.0]
    with pytest.raises(DataError, match="every cell"):
        grid_tensor(codes[:-1], data)


def test_transfer_errors_on_a_planted_grid_rotation_exact_expression_better_than_copying():
    """Held-out persons of a planted grid: their codes and their rotation are exact; the expression
    transfer only beats copying, because 25 expression codes span their 7-d affine space, so a
    face's identity and expression parameters trade a scale that the sum-to-one term cannot fix."""
    grid = planted_p1(persons=7)
    train, test = grid[:, :5], grid[:, 5:]
    errors = {}
    for weight, iters in ((100.0, 300), (0.0, 30)):
        model = StackedTensorModel(False, normalise="centre", ridge=1e-6, sum_to_one=weight, iters=iters).fit(
            train, ["identity", "expression", "yaw"], (4, 8))
        errors[weight] = transfer_errors(model, test)
    exact, loose = errors[100.0], errors[0.0]
    assert exact["eps_approx"] < 1e-6 * float(test.pow(2).sum(0).mean())
    assert exact["eps_rot"] < 1e-6 * exact["eps_rot_copy"] and exact["eps_expr"] < 0.5 * exact["eps_expr_copy"]
    assert loose["eps_rot"] > 1e-3 * loose["eps_rot_copy"]  # the centred model needs the sum-to-one term
    # one model per style has S times the parameters: it fits a noisy grid more closely (P-I §III-C)
    noisy = planted_p1(persons=7, noise=0.5, seed=3)
    fits = [transfer_errors(StackedTensorModel(per, normalise="standardise").fit(noisy[:, :5], ["identity", "expression",
                                                                                             "yaw"], (4, 8)),
                            noisy[:, 5:])["eps_approx"] for per in (False, True)]
    assert fits[1] < fits[0]


def test_masked_hooi_fills_a_missing_code_of_a_low_rank_grid():
    grid = planted_p1(persons=6)
    holed = grid.clone()
    holed[:, 2, 7, 1] = float("nan")
    filled = impute(holed, iters=300)
    truth, got = grid[:, 2, 7, 1], filled[:, 2, 7, 1]
    assert (got - truth).norm() < 0.05 * (truth - grid.mean((1, 2, 3))).norm()
    assert torch.equal(filled[:, 0], grid[:, 0])


def test_a_saved_model_loads_to_the_same_model_and_corrupt_files_are_one_error(tmp_path):
    t, _ = planted_tensor(persons=4, dim=16)
    modes = ["identity", "expression", "intensity", "yaw"]
    model = StackedTensorModel(True, normalise="standardise", ridge=0.5).fit(t, modes, (2, 8))
    save_model(model, tmp_path / "m", {"generator": "x"})
    loaded, meta = load_model(tmp_path / "m")
    codes = t[:, :2, 0, 0, 0].T
    assert meta["generator"] == "x" and loaded.modes_ == modes
    assert torch.allclose(loaded.inverse_transform(loaded.transform(codes)), model.inverse_transform(model.transform(codes)))
    assert torch.allclose(loaded.directions()["yaw"].vectors, model.directions()["yaw"].vectors)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(DataError, match="corrupt"):
        load_model(tmp_path / "m")
    with pytest.raises(DataError, match="latents"):
        model.transform(torch.zeros(1, 3, 8))


def _codes_folder(path, n, shape, nan_cell=None):
    ws = torch.randn(n, *shape, generator=torch.Generator().manual_seed(0)) * 0.1
    if nan_cell is not None:
        ws[nan_cell] = float("nan")
    result = gan_invert.Inversion("w+", ws, ws, [], torch.zeros(n, 3, 32, 32), torch.zeros(n), torch.zeros(n), {})
    return gan_invert.save_inversion(result, path, {"method": "test"})


def test_control_tensor_fit_and_transfer_and_their_bad_inputs(tmp_path, mien_main):
    grid = ["--persons", "3", "--emotions", "happy", "--intensities", "0.5,1", "--no-progress"]
    n = len(GridSpec(layout="p1", **TINY).dataset(32))
    holed = _codes_folder(tmp_path / "holed", n, (8, 128), nan_cell=4)
    code, out = mien_main("control", "tensor", "fit", ZOO_GAN, "--codes", holed, "--out", tmp_path / "m", *grid)
    assert code == 2 and "--impute" in out.err and len(out.err.strip().splitlines()) == 1
    code, out = mien_main("control", "tensor", "fit", ZOO_GAN, "--codes", holed, "--impute", "--out", tmp_path / "m",
                          *grid)
    assert code == 0, out.err
    assert json.loads((tmp_path / "m" / "model.json").read_text())["missing_cells"] == 1
    wrong = _codes_folder(tmp_path / "wrong", n, (8, 64))
    code, out = mien_main("control", "tensor", "fit", ZOO_GAN, "--codes", wrong, "--out", tmp_path / "w", *grid)
    assert code == 2 and "latents" in out.err and len(out.err.strip().splitlines()) == 1
    code, out = mien_main("control", "tensor", "transfer", tmp_path / "m", "--face", "1", "--steps", "2",
                          "--out", tmp_path / "t.png")
    assert code == 0 and (tmp_path / "t.png").stat().st_size > 0, out.err
    other = StackedTensorModel(True).fit(torch.randn(2 * 16, 3, 3, 2, dtype=torch.float64),
                                         ["identity", "expression", "yaw"], (2, 16))
    save_model(other, tmp_path / "other", {"generator": ZOO_GAN})
    code, out = mien_main("control", "tensor", "transfer", tmp_path / "other", "--face", "0", "--out", tmp_path / "o.png")
    assert code == 2 and "latents" in out.err and len(out.err.strip().splitlines()) == 1


def test_reproduce_haas_tensor_tiny_writes_the_tables(tmp_path, mien_main):
    code, out = mien_main("reproduce", "haas-tensor", "--preset", "tiny", "--out", tmp_path, "--no-progress")
    assert code == 0, out.err
    text = (tmp_path / "haas-tensor.md").read_text()
    for heading in ("P-II Table 1", "P-II Table 2", "P-I transfer errors", "Expression-classifier", "Planted"):
        assert heading in text
    r = json.loads((tmp_path / "results.json").read_text())
    for latents in ("random", "grid"):  # the full-rank relaxation contains every rank-one code
        assert r["table1"][latents]["full_rank"]["mean"] <= r["table1"][latents]["rank_one"]["mean"] + 1e-6
    assert r["planted"]["direction_cosine_min"] > 0.7 and r["planted"]["apathy_error"] < 0.05
    assert r["planted"]["apathy_to_neutral"] > 0.5
    assert set(r["table2"]) == {"no edit", "inversion of the frontal face", "InterFaceGAN", "TensorGAN"}
    for name in ("frontalisation", "expression_transfer", "global_directions"):
        assert (tmp_path / "grids" / f"{name}.png").stat().st_size > 0
