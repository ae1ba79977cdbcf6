"""Missing data (Zou thesis §4.8.2): the vertices on one side of a mesh (left, right, lower,
upper, front or rear) are deleted, the fraction counted along the extent of the mesh in that
dimension, and imputed with 0, the per-vertex mean of the normalised coordinates.

Training augmentation: with probability ``p_keep`` (0.6) a mesh is left whole; otherwise a side
is drawn uniformly and a fraction uniformly in [0, ``max_fraction``] (0.4). The reconstruction
target of the DVAE stays the whole mesh."""

from __future__ import annotations

import torch

SIDES = ("left", "right", "lower", "upper", "rear", "front")  # axis x, y, z; low then high


def side_mask(meshes: torch.Tensor, side: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """(B, V) True where a vertex is deleted: those within ``fraction`` (B,) of the extent of each
    mesh (B, V, 3, native coordinates) from ``side`` (B,) (an index into :data:`SIDES`)."""
    axis = (side // 2).long()
    coord = meshes.gather(2, axis.view(-1, 1, 1).expand(-1, meshes.shape[1], 1)).squeeze(2)
    lo, hi = coord.min(1, keepdim=True).values, coord.max(1, keepdim=True).values
    position = (coord - lo) / (hi - lo).clamp_min(1e-12)  # 0 at the low side, 1 at the high side
    position = torch.where((side % 2 == 1)[:, None], 1 - position, position)
    return position < fraction[:, None]


def remove(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalised meshes ``x`` with the masked vertices set to 0 (the per-vertex mean)."""
    return x.masked_fill(mask[..., None], 0.0)


def random_missing(meshes: torch.Tensor, p_keep: float = 0.6, max_fraction: float = 0.4,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The deletion mask of the training augmentation for a batch of native meshes (B, V, 3)."""
    b, dev = len(meshes), meshes.device
    side = torch.randint(len(SIDES), (b,), generator=generator).to(dev)
    fraction = torch.rand(b, generator=generator).to(dev) * max_fraction
    keep = torch.rand(b, generator=generator).to(dev) < p_keep
    return side_mask(meshes, side, torch.where(keep, torch.zeros_like(fraction), fraction))
