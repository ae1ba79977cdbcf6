"""Haas Ch. 3 multilinear algebra and the HOSVD latent model (H1) against Kolda-Bader's definitions,
tensorly, planted Tucker tensors and the closed forms of P-II's global directions."""

import numpy as np
import pytest
import tensorly as tl
import torch


from mien.control.multilinear import fold, hooi, hosvd, mode_product, reconstruct, truncation_bound, unfold
from mien.control.tensor_model import TensorModel, apathy_point, planted_tensor
from mien.errors import ConfigError, DataError

MODES = ["identity", "expression", "intensity", "yaw"]


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_unfold_is_kolda_bader_and_differs_from_tensorly_only_in_column_order():
    t = rand(4, 3, 5, 2)
    for n in range(4):
        ours = unfold(t, n)
        assert np.allclose(ours.numpy(), np.reshape(np.moveaxis(t.numpy(), n, 0), (t.shape[n], -1), order="F"))
        assert torch.equal(fold(ours, n, t.shape), t)
        theirs = torch.from_numpy(tl.unfold(t.numpy(), n))
        assert sorted(ours.flatten().tolist()) == sorted(theirs.flatten().tolist())
        if n in (0, 2):  # columns permuted: same left singular vectors (up to sign)
            u1, u2 = torch.linalg.svd(ours)[0], torch.linalg.svd(theirs)[0]
            assert torch.allclose(u1.abs(), u2.abs(), atol=1e-8)
        a = rand(6, t.shape[n], seed=n)
        assert np.allclose(mode_product(t, a, n).numpy(), tl.tenalg.mode_dot(t.numpy(), a.numpy(), n))
    assert not torch.equal(unfold(t, 1), torch.from_numpy(tl.unfold(t.numpy(), 1)))


def test_hosvd_recovers_a_planted_tucker_tensor_and_the_truncation_bound_holds():
    core, factors = rand(2, 3, 2, seed=1), [torch.linalg.qr(rand(n, r, seed=n))[0] for n, r in ((6, 2), (5, 3), (4, 2))]
    planted = reconstruct(core, factors)
    s, u, sig = hosvd(planted, [2, 3, 2])
    assert torch.allclose(reconstruct(s, u), planted, atol=1e-10)
    for got, true in zip(u, factors):  # the same subspaces
        assert torch.allclose(got @ got.T, true @ true.T, atol=1e-10)
    noisy = planted + 0.3 * rand(6, 5, 4, seed=9)
    for ranks in ([1, 1, 1], [2, 2, 2], [3, 1, 4]):
        s, u, sig = hosvd(noisy, ranks)
        error = float((reconstruct(s, u) - noisy).pow(2).sum())
        assert error <= truncation_bound(sig, ranks) + 1e-9
        c, f = hooi(noisy, ranks)
        assert float((reconstruct(c, f) - noisy).pow(2).sum()) <= error + 1e-9  # HOOI refines HOSVD


def test_hooi_with_a_mask_fills_missing_cells_of_a_low_rank_tensor():
    core, factors = rand(2, 2, 2, seed=3), [rand(n, 2, seed=10 + n) for n in (8, 7, 6)]
    planted = reconstruct(core, factors)
    mask = torch.rand(planted.shape, generator=torch.Generator().manual_seed(4)) > 0.15
    observed = torch.where(mask, planted, torch.full_like(planted, float("nan")))
    with pytest.raises(DataError, match="mask"):
        hooi(observed, [2, 2, 2])
    c, f = hooi(observed, [2, 2, 2], mask=mask, iters=300)
    assert torch.allclose(reconstruct(c, f)[~mask], planted[~mask], atol=1e-4)


def test_model_reproduces_training_cells_and_the_estimators_agree():
    t, _ = planted_tensor(apathy=0.7)
    model = TensorModel(ridge=1e-3, sum_to_one=0.0, iters=200).fit(t, MODES)
    sizes = t.shape[1:]
    cell = (2, 3, 1, 0)
    onehot = [torch.eye(n, dtype=torch.float64)[[j]] for n, j in zip(sizes, cell)]
    code = t[(slice(None), *cell)][None]
    assert torch.allclose(model.inverse_transform(onehot), code, atol=1e-10)
    als = model.transform(code)
    assert float(model.approximation_error(code, als)) < 1e-4 * float(code.pow(2).sum())
    adam = TensorModel(ridge=1e-3, sum_to_one=0.0, solver="adam", adam_steps=600, lr=0.05).fit(t, MODES)
    q = adam.transform(code)
    assert float(adam.approximation_error(code, q)) < 1e-3 * float(code.pow(2).sum())
    assert torch.allclose(model.inverse_transform(als), adam.inverse_transform(q), atol=0.05 * float(code.abs().max()))
    full = model.transform_full_rank(code)
    assert full.shape == (1, *sizes) and torch.allclose(model.inverse_transform_full_rank(full), code, atol=1e-8)
    # transfer: the estimated identity with another expression's one-hot is that cell's code
    moved = model.transfer(code, "expression", torch.eye(6, dtype=torch.float64)[5], params=onehot)
    assert torch.allclose(moved, t[:, 2, 5, 1, 0][None], atol=1e-10)


def test_global_directions_are_the_closed_form_on_a_rank_one_intensity_tensor():
    """With the centred tensor s_i X_(p, e, r) (zero-mean levels s), the truncated model's emotion
    direction times the intensity factor is the per-cell mean over persons and views (Eqs. 9-15)."""
    x = rand(16, 5, 6, 2, seed=7)
    s = torch.tensor([-1.5, -0.5, 0.5, 1.5], dtype=torch.float64)
    mean = rand(16, seed=8)
    t = mean[:, None, None, None, None] + torch.einsum("i,dper->dpeir", s, x - x.mean(dim=(1, 2, 3), keepdim=True))
    found = TensorModel().fit(t, MODES).global_directions()
    per_cell = (t - mean[:, None, None, None, None]).mean(dim=(1, 4))  # D x E x I
    assert torch.allclose(torch.einsum("ed,i->dei", found["emotions"], found["intensity_factor"]), per_cell, atol=1e-10)
    views = (t - mean[:, None, None, None, None]).mean(dim=(1, 2))  # D x I x R
    u = found["intensity_factor"]
    expected_yaw = found["q4_bar"] * torch.einsum("dir,i->dr", views, u) @ torch.tensor([1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(found["yaw"], expected_yaw / 2 ** 0.5, atol=1e-10)
    directions = TensorModel().fit(t, MODES, latent_shape=(2, 8)).directions(names=[f"e{j}" for j in range(6)])
    assert directions["yaw"].space == "w+" and directions["e3"].vectors.shape == (1, 2, 8)


def test_the_planted_apathy_point_is_found():
    g = torch.Generator().manual_seed(5)
    c0, d = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    s = torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    points = (c0 + s[None, :, None] * d[:, None, :]).reshape(-1, 4)
    groups = [list(range(4 * e, 4 * e + 4)) for e in range(6)]
    assert torch.allclose(apathy_point(points, groups), c0, atol=1e-10)
    # through the model: the P-I layout (neutral + 6 x 4 expression cells in one mode). The centred
    # data are affine in the planted expression codes, so are the rows of the (rank-8 truncated)
    # expression factor, and the apathy point of those rows is the image of c0
    _, truth = planted_tensor(apathy=1.0, seed=2)
    neutral = torch.randn(1, 7, generator=g, dtype=torch.float64)
    codes = torch.cat([neutral, (truth["apathy"] + truth["levels"][None, :, None]
                                 * truth["directions"][:, None, :]).reshape(-1, 7)])
    grid = truth["mean"][:, None, None, None] + torch.einsum("dakv,pa,ck,rv->dpcr", truth["core"], truth["identity"],
                                                             codes, truth["view"])
    rows = TensorModel(ranks=[None, 8, None]).fit(grid, ["identity", "expression", "yaw"]).factors_[1]
    affine = torch.cat([codes, torch.ones(25, 1, dtype=torch.float64)], 1)
    linear = torch.linalg.lstsq(affine, rows).solution
    assert torch.allclose(affine @ linear, rows, atol=1e-8)
    found = apathy_point(rows, [[1 + 4 * e + i for i in range(4)] for e in range(6)])
    assert torch.allclose(found, torch.cat([truth["apathy"], torch.ones(1, dtype=torch.float64)]) @ linear, atol=1e-8)
    assert (found - rows[0]).norm() > 0.05  # the apathy point is not the neutral face


def test_bad_inputs_give_one_line():
    t, _ = planted_tensor()
    with pytest.raises(DataError, match="mode names"):
        TensorModel().fit(t, ["identity"])
    holed = t.clone()
    holed[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="hooi"):
        TensorModel().fit(holed, MODES)
    model = TensorModel().fit(t, MODES)
    with pytest.raises(DataError, match="coordinates"):
        model.transform(torch.zeros(1, 5))
    with pytest.raises(ConfigError, match="modes"):
        model.mode_index("pose")
    with pytest.raises(ConfigError, match="solver"):
        TensorModel(solver="sgd").fit(t, MODES)
    with pytest.raises(ConfigError, match="rank"):
        hosvd(t, [1, 1, 1, 1, 99])
