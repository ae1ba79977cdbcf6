"""Label-swap metrics of Zou thesis ch. 5-6 (§5.4, §6.5; digest E), scored with mien's evaluator
in place of the independent ResNet-50. In a swap, x_{y=0} and x_{y=1} are encoded with their
true labels, giving (z_0, c_0) and (z_1, c_1); D(z_0, c_1, y=1) should gain the attribute and
D(z_1, c_0, y=0) lose it.

The scoring classifier of a label is the evaluator's attribute head for sex, glasses, beard and
hat; for ``smile`` (not an attribute of the evaluator) its expression head: happy with an
intensity of at least the world's smile threshold (:mod:`mien.data.world.labels`).

Beyond the thesis (which had no ground truth for a swap): :func:`exact_swap_distances` compares
each swap with the world's re-render of the same face with the other face's label and features."""

from __future__ import annotations

import numpy as np
import torch

from mien.data.world.geometry import EXPRESSIONS
from mien.data.world.labels import SMILE_MIN_INTENSITY
from mien.errors import ConfigError
from mien.evaluator.network import ATTRIBUTES
from mien.metrics.image import lpips_mien

SCORED_LABELS = (*ATTRIBUTES, "smile")


def _evaluator(evaluator, images):
    from mien.metrics.image import _evaluator as pick

    return pick(evaluator, images)


@torch.no_grad()
def classify(images, attribute: str = "glasses", evaluator=None) -> torch.Tensor:
    """The scoring classifier's 0/1 decision for ``attribute`` on each image (long)."""
    if attribute not in SCORED_LABELS:
        raise ConfigError(f"unknown attribute {attribute!r}; the evaluator scores {', '.join(SCORED_LABELS)}")
    images = torch.as_tensor(images).float()
    out = _evaluator(evaluator, images)(images)
    if attribute == "smile":
        happy = out["expression"].argmax(1) == EXPRESSIONS.index("happy")
        return (happy & (out["intensity"].reshape(-1) >= SMILE_MIN_INTENSITY)).long()
    return (out["attributes"][:, ATTRIBUTES.index(attribute)] > 0).long()


def success_rate(images, target: int, attribute: str = "glasses", evaluator=None) -> float:
    """Share of ``images`` that the evaluator classifies as ``attribute`` = ``target``."""
    return (classify(images, attribute, evaluator) == int(target)).float().mean().item()


def classifier_accuracy(images, y, attribute: str = "glasses", evaluator=None) -> float:
    """Accuracy of the scoring classifier on real faces with true labels ``y`` (what the thesis
    states for its ResNet-50: 98.69 % on glasses, 93.07 % on smile, Tab. 6.2)."""
    y = torch.as_tensor(y).long().reshape(-1)
    return (classify(images, attribute, evaluator) == y).float().mean().item()


def sr_plus(added, attribute: str = "glasses", evaluator=None) -> float:
    """SR(+): share of swaps D(z_0, c_1, y=1) classified as having the attribute (Zou §5.4, §6.5)."""
    return success_rate(added, 1, attribute, evaluator)


def sr_minus(removed, attribute: str = "glasses", evaluator=None) -> float:
    """SR(-): share of swaps D(z_1, c_0, y=0) classified as not having the attribute."""
    return success_rate(removed, 0, attribute, evaluator)


@torch.no_grad()
def cfd(real, fake, evaluator=None) -> float:
    """Classification Feature Distance (Zou §6.5): mean L2 distance between the classifier's last
    layer for the original x_{y=1} and for the fake D(z_0, c_1, y=1) that shares its c and y
    (likewise x_{y=0} and D(z_1, c_0, y=0)); here the evaluator's neck features."""
    real, fake = torch.as_tensor(real).float(), torch.as_tensor(fake).float()
    ev = _evaluator(evaluator, real)
    return (ev.features(real) - ev.features(fake)).norm(dim=1).mean().item()


@torch.no_grad()
def exact_swap_distances(swapped, targets, evaluator=None) -> dict:
    """Distances of swaps to their exact targets (the world's re-renders): ``exact_lpips``, the
    mean lpips_mien, and ``exact_feature``, the mean L2 distance of the evaluator's neck features
    (the features of :func:`cfd`). Both are 0 for a perfect swap."""
    swapped, targets = torch.as_tensor(swapped).float(), torch.as_tensor(targets).float()
    ev = _evaluator(evaluator, targets)
    return {"exact_lpips": lpips_mien(targets, swapped, ev),
            "exact_feature": (ev.features(targets) - ev.features(swapped)).norm(dim=1).mean().item()}


def bca(y_true, y_pred) -> float:
    """Balanced classification accuracy of q(y|x): the mean of the per-class recalls."""
    t, p = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    return float(np.mean([(p[t == c] == c).mean() for c in np.unique(t)]))


def label_probe_bca(codes, y, folds: int = 5, seed: int = 0) -> float:
    """Held-out balanced accuracy of a linear probe (logistic regression on standardised codes,
    ``folds``-fold stratified) reading a binary label ``y`` from ``codes`` (N x D): 0.5 when the
    codes keep nothing linear of the label. On a label model's z it measures what Zou §5.3 and
    §6.3 assume, that z is independent of y; a z that keeps y decodes it back after a swap."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    z = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    t = np.asarray(y).reshape(-1).astype(int)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    pred = cross_val_predict(probe, z, t, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return bca(t, pred)


def swap_scores(added, real_with, removed, real_without, attribute: str = "glasses", evaluator=None) -> dict:
    """SR(+), SR(-), their mean SR (Zou Tab. 6.3) and CFD over both swap directions: ``added`` =
    D(z_0, c_1, y=1) paired with ``real_with`` = x_{y=1}; ``removed`` = D(z_1, c_0, y=0) paired
    with ``real_without`` = x_{y=0}."""
    plus, minus = sr_plus(added, attribute, evaluator), sr_minus(removed, attribute, evaluator)
    dist = (cfd(real_with, added, evaluator) + cfd(real_without, removed, evaluator)) / 2
    return {"sr_plus": plus, "sr_minus": minus, "sr": (plus + minus) / 2, "cfd": dist}
