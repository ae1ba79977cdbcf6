"""Disentanglement scores: near-perfect for the factors themselves (permuted, rescaled), near zero
for noise, lowered by a mixing rotation."""

import functools

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
