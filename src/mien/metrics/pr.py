"""k-NN support estimates of fidelity and diversity on evaluator features: improved precision and
recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020), overall and per
class (the per-emotion precision/recall of Pikoulis digest, Tab. 4.1)."""

from __future__ import annotations

import torch

from mien.errors import DataError


def _radii(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance of each row of x to its k-th nearest other row."""
    return torch.cat([torch.cdist(x[i:i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), chunk)])


def _inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """B x C -> per query, how many balls B(centre, radius) contain it; per centre, whether any query is in it."""
    counts, covered = [], torch.zeros(len(centres), dtype=torch.bool)
    for i in range(0, len(queries), chunk):
        hit = torch.cdist(queries[i:i + chunk], centres) <= radii[None]
        counts.append(hit.sum(1))
        covered |= hit.any(0)
    return torch.cat(counts), covered


def precision_recall(gen, ref, k: int = 3) -> dict[str, float]:
    """precision: share of generated samples inside the k-NN ball of some reference sample;
    recall: share of reference samples inside the k-NN ball of some generated sample;
    density = sum of ball memberships of generated samples / (k M); coverage: share of
    reference balls that hold at least one generated sample."""
    g, r = torch.as_tensor(gen).float(), torch.as_tensor(ref).float()
    if min(len(g), len(r)) <= k:
        raise DataError(f"precision/recall with k={k} needs more than {k} samples in each set")
    r_radii, g_radii = _radii(r, k), _radii(g, k)
    g_in_r, r_covered = _inside(g, r, r_radii)
    r_in_g, _ = _inside(r, g, g_radii)
    return {"precision": (g_in_r > 0).float().mean().item(), "recall": (r_in_g > 0).float().mean().item(),
            "density": (g_in_r.float().sum() / (k * len(g))).item(), "coverage": r_covered.float().mean().item()}


def precision_recall_per_class(gen, gen_labels, ref, ref_labels, k: int = 3) -> dict[int, dict[str, float]]:
    """:func:`precision_recall` within each class present in both sets (classes with too few samples are skipped)."""
    g, r = torch.as_tensor(gen).float(), torch.as_tensor(ref).float()
    gl, rl = torch.as_tensor(gen_labels), torch.as_tensor(ref_labels)
    out = {}
    for c in sorted(set(gl.tolist()) & set(rl.tolist())):
        if min(int((gl == c).sum()), int((rl == c).sum())) > k:
            out[int(c)] = precision_recall(g[gl == c], r[rl == c], k)
    return out
