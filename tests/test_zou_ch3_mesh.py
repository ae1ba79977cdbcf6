"""`mien reproduce zou-ch3-mesh` pieces (Zou §3.7.1, Tab. 3.5): the splits, the errors and the ordering line."""

from __future__ import annotations

import pytest
import torch

from mesh_helpers import standin_sequences
from mien.data.world.mesh import mesh_template
from mien.errors import ConfigError
from mien.experiments.zou_ch3_mesh import HeldSequences, ordering, ridge_errors, split_masks, vertex_errors
from mien.models import build_model


def held(subjects=5, motions=4):
    template = mesh_template("small")
    return HeldSequences(standin_sequences(template, subjects, motions, frames=4), template)


def test_splits_hold_out_the_last_three_motions_or_subjects():
    data = held()
    train, test = split_masks(data, "expression")
    assert set(data.data["motion"][test].tolist()) == {1, 2, 3} and set(data.data["motion"][train].tolist()) == {0}
    train, test = split_masks(data, "identity")
    assert set(data.data["subject"][test].tolist()) == {2, 3, 4} and not (train & test).any()
    assert len(data.part(train)) == 8 and data.part(train).template is data.template
    with pytest.raises(ConfigError, match="holds out 3 subjects"):
        split_masks(held(subjects=3), "identity")


def test_vertex_errors_are_euclidean_distances_in_mm():
    data = held(subjects=2, motions=1)
    model = build_model({"name": "meshdecoder", "variant": "s2d", "widths": [4, 4, 4, 4, 4]}).eval()
    model.fit_data(data.data)
    e = vertex_errors(model, data, chunk=1)  # a fresh decoder's last layer is zero: it predicts dM = 0
    truth = (data.data["mesh"] - data.data["neutral"][:, None]).norm(dim=-1)
    assert e.shape == truth.shape and torch.allclose(e, truth, atol=1e-5)


def test_ordering_says_whether_the_thesis_ranking_holds():
    rows = lambda *means: {v: {"mean": m} for v, m in zip(("linear", "coma", "s2d", "proposed"), means)}
    text = ordering({"expression": rows(4, 3, 2, 1), "identity": rows(1, 2, 3, 4)})
    first, second = text.splitlines()
    assert first.startswith("- expression split: Proposed < S2D") and "holds" in first
    assert second.startswith("- identity split: Linear [29] < CoMA") and "differs" in second


def test_ridge_references_recover_a_planted_map_and_read_the_neutral_mesh_only_when_asked():
    """dM = A dL + c B dL with c the coefficient of one neutral-mesh mode: the PC-reading ridge
    recovers it on held-out subjects, the dL-only ridge cannot (it misses c B dL)."""
    g = torch.Generator().manual_seed(0)
    s, t, v, n = 12, 6, 5, 2
    c = torch.randn(s, generator=g)
    neutral = torch.randn(v, 3, generator=g) + c[:, None, None] * torch.randn(v, 3, generator=g)
    dl = torch.randn(s, t, n, 3, generator=g)
    a, b = torch.randn(3 * v, 3 * n, generator=g), torch.randn(3 * v, 3 * n, generator=g)
    dm = (dl.flatten(2) @ a.T + c[:, None, None] * (dl.flatten(2) @ b.T)).reshape(s, t, v, 3)
    data = HeldSequences({"neutral": neutral, "mesh": neutral[:, None] + dm, "landmarks": dl,
                          "neutral_landmarks": torch.zeros(s, n, 3)}, template=None)
    train, test = data.part(torch.arange(s) < 9), data.part(torch.arange(s) >= 9)
    assert ridge_errors(train, test, components=1, ridge=1e-9).max() < 1e-3
    assert ridge_errors(train, test, components=0, ridge=1e-9).mean() > 0.1
