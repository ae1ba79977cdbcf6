"""Direction estimators in scikit-learn style (design.md, Directions and estimators): ``__init__``
stores the parameters, ``fit`` returns self, learned values end in ``_``; each fit produces a
:class:`~mien.control.direction.Direction` as ``direction_``.

- :class:`AxisDirection`: the coordinate axes e_d, the traversals of disentanglement (Zou ch. 2;
  lecture 002 on structured latent spaces), with the data range of each dimension;
- :class:`MeanDifference`: the mean code of the positives minus that of the negatives, in ``z``,
  ``x_t`` or ``h`` (Haas P-V §5, Alg. E, Eq. 10; White 2016's attribute vectors).
"""

from __future__ import annotations

import numpy as np
import torch

from mien.control.direction import Direction
from mien.errors import ConfigError, DataError


def _json(value):
    """A label as a JSON value for the provenance."""
    value = value.item() if hasattr(value, "item") else value
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


class _DirectionEstimator:
    def _check_fitted(self) -> Direction:
        if not hasattr(self, "direction_"):
            raise ConfigError(f"this {type(self).__name__} is not fitted yet; call fit first")
        return self.direction_

    def transform(self, codes: torch.Tensor) -> torch.Tensor:
        """n x k coordinates of ``codes`` along the unit vectors of ``direction_``."""
        v = self._check_fitted().vectors.flatten(1).to(codes.device, codes.dtype)
        return codes.flatten(1) @ (v / v.norm(dim=1, keepdim=True)).T


class AxisDirection(_DirectionEstimator):
    """The unit vectors e_d of code dimensions ``dims`` in ``z`` (``latent_dim`` when fitted without
    codes). Fitted on codes, it also learns ``range_`` (k x 2), the q..1-q quantiles of each
    dimension: the range a regularised or non-standard dimension actually uses."""

    def __init__(self, dims, latent_dim: int | None = None, q: float = 0.02, data: str = ""):
        self.dims, self.latent_dim, self.q, self.data = dims, latent_dim, q, data

    def fit(self, codes: torch.Tensor | None = None) -> "AxisDirection":
        dims = [self.dims] if isinstance(self.dims, int) else list(self.dims)
        size = codes.shape[1] if codes is not None else self.latent_dim
        if size is None:
            raise ConfigError("AxisDirection needs codes or latent_dim to know the code size")
        bad = [d for d in dims if not 0 <= d < size]
        if bad:
            raise ConfigError(f"latent dimension {bad[0]} does not exist; this model has dimensions 0..{size - 1}")
        self.direction_ = Direction("z", torch.eye(size)[dims], sign="+1 raises the code dimension",
                                    provenance={"method": "axis", "dims": dims, "data": self.data, "seed": None})
        if codes is not None:
            self.range_ = torch.stack([torch.quantile(codes[:, dims], self.q, dim=0),
                                       torch.quantile(codes[:, dims], 1 - self.q, dim=0)], 1)
        return self

    def sweep(self, steps: int) -> torch.Tensor:
        """k x steps values evenly over each dimension's ``range_`` (the alphas of an absolute traversal)."""
        if not hasattr(self, "range_"):
            raise ConfigError("the data range needs fit(codes) on encoded data")
        lo, hi = self.range_[:, 0], self.range_[:, 1]
        return lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, steps)[None]


class MeanDifference(_DirectionEstimator):
    """v = mean(q | label = positive) - mean(q | label = negative, or any other label) for codes q in
    ``space``: n x D for ``z``, n x C x h x w for ``x_t``, n x len(timesteps) x C x h x w for ``h``
    (h_{T:1} as :func:`~mien.control.direction.record_h` records it) (Haas P-V §5, Eq. 10)."""

    def __init__(self, positive, negative=None, space: str = "z", timesteps: list[int] | None = None, data: str = ""):
        self.positive, self.negative, self.space, self.timesteps, self.data = positive, negative, space, timesteps, data

    def fit(self, codes: torch.Tensor, labels) -> "MeanDifference":
        labels = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
        if len(labels) != len(codes):
            raise DataError(f"{len(codes)} codes but {len(labels)} labels; give one label per code")
        pos = torch.as_tensor(labels == self.positive)
        neg = torch.as_tensor(labels == self.negative if self.negative is not None else ~(labels == self.positive))
        if not pos.any() or not neg.any():
            raise DataError(f"no {'positive' if not pos.any() else 'negative'} codes among the labels; "
                            f"check positive={self.positive!r} and negative={self.negative!r}")
        v = codes[pos.to(codes.device)].mean(0) - codes[neg.to(codes.device)].mean(0)
        self.direction_ = Direction(self.space, v[None], timesteps=self.timesteps, sign=f"towards {self.positive}",
                                    provenance={"method": "mean_difference", "positive": _json(self.positive),
                                                "negative": _json(self.negative), "n_positive": int(pos.sum()),
                                                "n_negative": int(neg.sum()), "data": self.data, "seed": None})
        return self


def dimension_labels(model, dims: list[int], steps: int) -> list[str]:
    """Row captions for a traversal grid: 'z3', or 'z1 yaw' for a dimension an AR-VAE ties to an attribute."""
    by_dim = {d: n for n, d in (model.attribute_dims() if hasattr(model, "attribute_dims") else {}).items()}
    return [f"z{d} {by_dim.get(d, '')}".strip() if j == 0 else "" for d in dims for j in range(steps)]
