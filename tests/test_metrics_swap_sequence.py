"""Label-swap metrics (Zou ch. 5-6) and sequence metrics (Zou §3.6) on world data."""

import functools

import numpy as np
import pytest
import torch

from mien.data.world import WorldDataset, WorldSequenceDataset, pad_sequences
from mien.errors import ConfigError, DataError
from mien.metrics.sequence import landmark_error, sequence_accuracy, sequence_fd
from mien.metrics.swap import bca, cfd, label_probe_bca, sr_minus, sr_plus, swap_scores


@functools.lru_cache(maxsize=None)
def glasses(value: int):
    return WorldDataset(64, 64, seed=77, fixed={"glasses": value}).batch(range(64))["image"]


def test_swap_rates_of_real_faces_follow_their_attribute():
    with_, without = glasses(1), glasses(0)
    assert sr_plus(with_) >= 0.95 and sr_minus(without) >= 0.95
    assert sr_plus(without) <= 0.05
    scores = swap_scores(with_, with_, without, without)
    assert scores["cfd"] == 0.0 and scores["sr"] == pytest.approx((scores["sr_plus"] + scores["sr_minus"]) / 2)
    assert cfd(with_, without) > 0
    with pytest.raises(ConfigError, match="unknown attribute"):
        sr_plus(with_, "moustache")


def test_label_probe_reaches_the_bayes_accuracy_of_a_planted_shift_and_chance_without_one():
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    z = rng.standard_normal((4000, 6))
    assert abs(label_probe_bca(z, y) - 0.5) < 0.03  # codes that keep nothing of y
    z[:, 2] += 2.0 * y  # one coordinate shifted by 2 standard deviations: Bayes accuracy Phi(1)
    assert label_probe_bca(z, y) == pytest.approx(norm.cdf(1.0), abs=0.02)
    z[:, 4] = y  # a copy of the label
    assert label_probe_bca(z, y) == 1.0


def test_bca_is_the_mean_of_per_class_recalls():
    y = np.array([0, 0, 0, 0, 1, 1])
    assert bca(y, np.array([0, 0, 0, 0, 1, 0])) == pytest.approx((1.0 + 0.5) / 2)


@functools.lru_cache(maxsize=None)
def sequences(seed: int, n: int = 200):
    ds = WorldSequenceDataset(n, seed, frames=(35, 45))
    return pad_sequences([ds[i] for i in range(n)])


def test_sequence_accuracy_and_fd():
    a, b = sequences(11), sequences(12)
    assert sequence_accuracy(a["sequence"], a["label"], a["length"]) >= 0.9
    shuffled = a["label"][torch.randperm(len(a["label"]), generator=torch.Generator().manual_seed(0))]
    assert sequence_accuracy(a["sequence"], shuffled, a["length"]) < 0.3
    same = sequence_fd(a["sequence"], b["sequence"], a["length"], b["length"])
    frozen = a["sequence"][:, :1].expand_as(a["sequence"])  # no motion at all
    assert same < sequence_fd(frozen, b["sequence"], a["length"], b["length"]) / 5


def test_landmark_error_per_landmark():
    target = torch.zeros(2, 5, 68, 3)
    pred = target.clone()
    pred[..., 10, 0] = 3.0
    err = landmark_error(pred, target)
    assert err["per_landmark"][10] == pytest.approx(3.0) and err["mean"] == pytest.approx(3.0 / 68)
    mask = torch.tensor([[True] * 5, [True, False, False, False, False]])
    assert landmark_error(pred, target, mask)["mean"] == pytest.approx(3.0 / 68)
    with pytest.raises(DataError, match="one shape"):
        landmark_error(pred, target[:1])
