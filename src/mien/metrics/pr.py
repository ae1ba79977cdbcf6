"""k-NN support estimates of fidelity and diversity on evaluator features: improved precision and
recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020), overall and per
class (the per-emotion precision/recall of Pikoulis digest, Tab. 4.1).

Distances are float64 and summed from explicit coordinate differences, never through
||a||^2 + ||b||^2 - 2 a.b, whose cancellation grows with the features' offset: the scores do not
change when a constant is added to every feature of both sets."""

from __future__ import annotations

import torch

from mien.errors import DataError


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of a and of b, from their differences."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _radii(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance of each row of x to its k-th nearest other row."""
    return torch.cat([_distances(x[i:i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), chunk)])


def _memberships(g, r, g_radii, r_radii, chunk: int = 1024):
    """One pass over the generated-to-reference distances: per generated sample, how many
    reference balls B(r_j, r_radii_j) hold it; per reference sample, whether its ball holds some
    generated sample (coverage) and whether it lies in some generated ball (recall)."""
    counts, covered, recalled = [], torch.zeros(len(r), dtype=torch.bool), torch.zeros(len(r), dtype=torch.bool)
    for i in range(0, len(g), chunk):
        d = _distances(g[i:i + chunk], r)
        in_r = d <= r_radii[None]
        counts.append(in_r.sum(1))
        covered |= in_r.any(0)
        recalled |= (d <= g_radii[i:i + chunk, None]).any(0)
    return torch.cat(counts), covered, recalled


def precision_recall(gen, ref, k: int = 3) -> dict[str, float]:
    """precision: share of generated samples inside the k-NN ball of some reference sample;
    recall: share of reference samples inside the k-NN ball of some generated sample;
    density = sum of ball memberships of generated samples / (k M); coverage: share of
    reference balls that hold at least one generated sample."""
    g, r = torch.as_tensor(gen).double(), torch.as_tensor(ref).double()
    if min(len(g), len(r)) <= k:
        raise DataError(f"precision/recall with k={k} needs more than {k} samples in each set")
    g_in_r, covered, recalled = _memberships(g, r, _radii(g, k), _radii(r, k))
    return {"precision": (g_in_r > 0).double().mean().item(), "recall": recalled.double().mean().item(),
            "density": g_in_r.sum().item() / (k * len(g)), "coverage": covered.double().mean().item()}


def precision_recall_per_class(gen, gen_labels, ref, ref_labels, k: int = 3) -> dict[int, dict[str, float]]:
    """:func:`precision_recall` within each class present in both sets (classes with too few samples are skipped)."""
    g, r = torch.as_tensor(gen).double(), torch.as_tensor(ref).double()
    gl, rl = torch.as_tensor(gen_labels), torch.as_tensor(ref_labels)
    out = {}
    for c in sorted(set(gl.tolist()) & set(rl.tolist())):
        if min(int((gl == c).sum()), int((rl == c).sum())) > k:
            out[int(c)] = precision_recall(g[gl == c], r[rl == c], k)
    return out
