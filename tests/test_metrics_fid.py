"""Fréchet distance, KID and k-NN precision/recall against closed forms and direct computations."""

import numpy as np
import pytest
import scipy.linalg
import torch

from mien.errors import DataError
from mien.metrics.fid import fid_from_features, frechet_distance, kid_from_features
from mien.metrics.pr import precision_recall, precision_recall_per_class


def _spd(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_matches_the_closed_form_of_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()  # 5 + (1 + 1 + 4)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, abs=1e-9)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_on_full_covariances():
    s1, s2 = _spd(16, 0), _spd(16, 1)
    mu1, mu2 = np.random.default_rng(2).normal(size=(2, 16))
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_fid_of_samples_approaches_the_population_value():
    rng = np.random.default_rng(3)
    s1, s2 = _spd(4, 4), _spd(4, 5)
    x = rng.multivariate_normal(np.zeros(4), s1, 40000)
    y = rng.multivariate_normal(np.ones(4), s2, 40000)
    assert fid_from_features(x, y) == pytest.approx(frechet_distance(np.zeros(4), s1, np.ones(4), s2), rel=0.05)


def _unbiased_mmd(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m = len(x)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_kid_matches_a_direct_unbiased_mmd():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(200, 8)), rng.normal(0.3, 1.2, size=(200, 8))
    mean, std = kid_from_features(y, x, subsets=3, subset_size=200)  # full sets: subsets only permute
    assert mean == pytest.approx(_unbiased_mmd(x, y), rel=1e-6)
    assert std == pytest.approx(0, abs=1e-9)
    assert abs(kid_from_features(x[:100], x[100:], subsets=20, subset_size=100)[0]) < 0.2 * mean


def test_feature_errors_are_clear():
    with pytest.raises(DataError, match="NaN"):
        fid_from_features(np.full((10, 3), np.nan), np.zeros((10, 3)))
    with pytest.raises(DataError, match="N x D"):
        fid_from_features(np.zeros(10), np.zeros((10, 3)))


def test_precision_and_recall_are_one_for_identical_sets_and_zero_for_disjoint_ones():
    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    same = precision_recall(x, x.clone())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] == pytest.approx(4 / 3, abs=1e-12)  # each ball holds its centre and its k = 3 neighbours
    far = precision_recall(x + 100, x)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_precision_recall_separate_fidelity_from_diversity():
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(2000, 4, generator=g)
    collapsed = 0.2 * torch.randn(2000, 4, generator=g)  # inside the data, low diversity
    scores = precision_recall(collapsed, ref)
    assert scores["precision"] > 0.95 and scores["recall"] < 0.3


def _prdc_brute_force(gen, ref, k):
    """Kynkäänniemi et al. 2019 and Naeem et al. 2020 in float64 numpy, from explicit differences."""
    def dist(a, b):
        return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))

    g_radii, r_radii = (np.sort(dist(x, x), 1)[:, k] for x in (gen, ref))
    d = dist(gen, ref)  # M x N
    in_r, in_g = d <= r_radii[None], d <= g_radii[:, None]
    return {"precision": in_r.any(1).mean(), "recall": in_g.any(0).mean(),
            "density": in_r.sum() / (k * len(gen)), "coverage": in_r.any(0).mean()}


@pytest.mark.parametrize("m,n,d,k", [(60, 70, 5, 3), (1100, 300, 4, 5)])  # 1100 crosses a chunk boundary
def test_prdc_match_a_float64_brute_force_reference(m, n, d, k):
    rng = np.random.default_rng(m)
    gen, ref = rng.normal(0.5, 0.7, size=(m, d)), rng.normal(size=(n, d))
    expected = _prdc_brute_force(gen, ref, k)
    assert 0 < expected["precision"] < 1 and 0 < expected["recall"] < 1
    assert precision_recall(gen, ref, k) == pytest.approx(expected, abs=1e-12)


def test_prdc_ignore_a_large_offset_of_every_feature():
    """Float64 differences, no ||a||^2 + ||b||^2 - 2ab cancellation: adding 1e6 moves no ball boundary."""
    rng = np.random.default_rng(7)
    gen, ref = rng.normal(0.2, 1.1, size=(300, 8)), rng.normal(size=(300, 8))
    scores = precision_recall(gen, ref)
    assert precision_recall(gen + 1e6, ref + 1e6) == pytest.approx(scores, abs=1e-9)
    assert precision_recall(torch.tensor(gen + 1e6), torch.tensor(ref + 1e6)) == pytest.approx(scores, abs=1e-9)
    assert scores == pytest.approx(_prdc_brute_force(gen, ref, 3), abs=1e-12)


def test_precision_recall_per_class():
    x = torch.randn(400, 8, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(400) % 2
    out = precision_recall_per_class(x, labels, x, labels)
    assert set(out) == {0, 1} and all(v["precision"] == 1.0 for v in out.values())


def test_torchmetrics_fid_with_mien_features_matches_fid_mien():
    from torchmetrics.image.fid import FrechetInceptionDistance

    from mien.data.world import WorldDataset
    from mien.metrics.fid import MienFeatures, fid_mien

    a = WorldDataset(300, 32, seed=5).batch(range(300))["image"]
    b = WorldDataset(300, 32, seed=6, fixed={"glasses": 1}).batch(range(300))["image"]
    tm = FrechetInceptionDistance(feature=MienFeatures(size=32), normalize=True)
    tm.update((a + 1) / 2, real=True)
    tm.update((b + 1) / 2, real=False)
    assert float(tm.compute()) == pytest.approx(fid_mien(b, a), rel=1e-3)
    assert fid_mien(a[:150], a[150:]) < fid_mien(b[:150], a[150:])  # glasses on every face move the features
