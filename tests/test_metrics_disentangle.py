"""Disentanglement scores: near-perfect for the factors themselves (permuted, rescaled), near zero
for noise, lowered by a mixing rotation; DCI and modularity against their analytic values on a
full factorial grid of discrete factors (every pair of factors exactly independent)."""

import functools
import itertools

import numpy as np
import pytest

from mien.data.factors import Factor
from mien.errors import DataError
from mien.metrics import disentangle as dis

SCHEMA = [Factor("shape", "categorical", values=("a", "b", "c", "d")), Factor("glasses", "binary", values=("no", "yes")),
          Factor("age", "continuous", range=(0, 1)), Factor("yaw", "continuous", range=(-1, 1)),
          Factor("light", "continuous", range=(0, 1)), Factor("fixed", "continuous", range=(0, 1))]


@functools.lru_cache(maxsize=None)
def representations(n: int = 3000):
    rng = np.random.default_rng(0)
    f = np.stack([rng.integers(0, 4, n), rng.integers(0, 2, n), rng.random(n), rng.uniform(-1, 1, n),
                  rng.random(n), np.full(n, 0.5)], 1)
    factors = f[:, [3, 0, 4, 1, 2]] * np.array([2.0, -3.0, 0.5, 7.0, 1.0])  # permuted and rescaled
    rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    return f, {"factors": factors, "noise": rng.normal(size=(n, 5)),
               "rotated": (factors / factors.std(0)) @ rotation}


@pytest.mark.parametrize("name,score", [("mig", dis.mig), ("sap", dis.sap),
                                        ("dci_d", lambda *a: dis.dci(*a)["disentanglement"]),
                                        ("dci_c", lambda *a: dis.dci(*a)["completeness"])])
def test_scores_rank_factors_rotation_and_noise(name, score):
    f, codes = representations()
    perfect, rotated, noise = (score(codes[k], f, SCHEMA) for k in ("factors", "rotated", "noise"))
    assert perfect > 0.9, name
    assert noise < 0.1, name
    assert rotated < perfect - 0.3, name


def test_suite_scores_and_their_ranges():
    f, codes = representations()
    perfect = dis.disentanglement_suite(codes["factors"], f, SCHEMA)
    noise = dis.disentanglement_suite(codes["noise"], f, SCHEMA)
    assert set(perfect) == {"beta_vae", "factor_vae", "mig", "sap", "dci_disentanglement", "dci_completeness",
                            "dci_informativeness", "modularity", "explicitness"}
    for key in ("beta_vae", "factor_vae", "dci_informativeness", "modularity"):
        assert perfect[key] > 0.95 and perfect[key] > noise[key] + 0.25, key
    assert perfect["explicitness"] > 0.9 and noise["explicitness"] < 0.6
    assert noise["beta_vae"] < 0.4 and noise["factor_vae"] < 0.4


def test_factor_dict_input_and_errors():
    f, codes = representations()
    as_dict = {fac.name: f[:, i] for i, fac in enumerate(SCHEMA)}
    assert dis.mig(codes["factors"], as_dict, SCHEMA) == pytest.approx(dis.mig(codes["factors"], f, SCHEMA))
    with pytest.raises(DataError, match="NaN"):
        dis.mig(np.full((100, 3), np.nan), f[:100], SCHEMA)
    with pytest.raises(DataError, match="N x 6"):
        dis.sap(codes["factors"], f[:, :2], SCHEMA)


def grid(*cardinalities, n: int = 2400):
    """Every combination of discrete factors with these cardinalities, repeated to n items, and its schema."""
    cells = np.array(list(itertools.product(*map(range, cardinalities))), dtype=np.float64)
    schema = [Factor(f"f{i}", "categorical", values=tuple("abcdefgh"[:c])) for i, c in enumerate(cardinalities)]
    return np.tile(cells, (n // len(cells), 1)), schema


def test_codes_equal_to_the_factors_score_one():
    f, schema = grid(4, 3, 2, 5)
    codes = f[:, [2, 0, 3, 1]] * np.array([1.0, -2.0, 3.0, 0.5])
    scores = dis.dci(codes, f, schema)
    assert scores["disentanglement"] == pytest.approx(1, abs=0.02)
    assert scores["completeness"] == pytest.approx(1, abs=0.02)
    assert dis.modularity(codes, f, schema) == pytest.approx(1, abs=1e-9)
    f, codes = representations()  # continuous factors too
    scores = dis.dci(codes["factors"], f, SCHEMA)
    assert scores["disentanglement"] == pytest.approx(1, abs=0.02)
    assert scores["completeness"] == pytest.approx(1, abs=0.02)


def test_duplicated_codes_lower_completeness_only():
    """Two equal copies of each factor: P~_.k = (1/2, 1/2) on D codes, so C = 1 - ln 2 / ln D."""
    for cardinalities in ((4, 5), (4, 3, 2, 5)):
        f, schema = grid(*cardinalities)
        codes = np.concatenate([f, 2 * f], 1)
        scores = dis.dci(codes, f, schema)
        assert scores["completeness"] == pytest.approx(1 - np.log(2) / np.log(codes.shape[1]), abs=0.03)
        assert scores["disentanglement"] == pytest.approx(1, abs=0.02)
        assert dis.modularity(codes, f, schema) == pytest.approx(1, abs=1e-9)


def test_one_code_for_two_factors_is_neither_disentangled_nor_modular():
    """Code 0 = 3 f0 + f1 holds both 3-valued factors: its importance is (1/2, 1/2, 0, 0), so
    D_0 = 1 - ln 2 / ln 4 = 1/2 with rho_0 = 1/2 and D = 1/4 + 1/4 + 1/4 = 3/4; its mutual
    information is (ln 3, ln 3, 0, 0), so delta_0 = 1/3 and modularity = (2/3 + 1 + 1) / 3."""
    f, schema = grid(3, 3, 2, 5)
    codes = np.concatenate([3 * f[:, :1] + f[:, 1:2], f[:, 2:]], 1)
    scores = dis.dci(codes, f, schema)
    assert scores["disentanglement"] == pytest.approx(0.75, abs=0.02)
    assert scores["completeness"] == pytest.approx(1, abs=0.02)
    assert dis.modularity(codes, f, schema) == pytest.approx(8 / 9, abs=1e-9)


def test_constant_codes_score_zero_modularity_and_leave_dci_alone():
    f, schema = grid(4, 3, 2, 5)
    codes = np.concatenate([f, np.full((len(f), 2), 7.0)], 1)
    assert dis.modularity(codes, f, schema) == pytest.approx(4 / 6, abs=1e-9)
    scores = dis.dci(codes, f, schema)
    assert scores["disentanglement"] == pytest.approx(1, abs=0.02)
    assert scores["completeness"] == pytest.approx(1, abs=0.02)


def test_scores_are_invariant_to_the_order_of_codes():
    f, codes = representations()
    perm = np.random.default_rng(5).permutation(5)
    z = codes["rotated"]
    for score in (dis.mig, dis.sap, dis.modularity):
        assert score(z[:, perm], f, SCHEMA) == pytest.approx(score(z, f, SCHEMA), abs=1e-12), score.__name__
    # the forests break exact ties between splits in a seeded random order of the codes
    assert dis.dci(z[:, perm], f, SCHEMA) == pytest.approx(dis.dci(z, f, SCHEMA), abs=0.005)
    g, schema = grid(3, 3, 2, 5)
    mixed = np.concatenate([3 * g[:, :1] + g[:, 1:2], g[:, 2:], np.ones((len(g), 1))], 1)
    perm = [3, 1, 0, 2]
    assert dis.dci(mixed[:, perm], g, schema) == pytest.approx(dis.dci(mixed, g, schema), abs=1e-9)
    assert dis.modularity(mixed[:, perm], g, schema) == pytest.approx(dis.modularity(mixed, g, schema), abs=1e-12)
