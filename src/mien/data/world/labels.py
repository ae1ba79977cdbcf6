"""Labels derived from the world's factors (Zou thesis ch. 5-6, digest C and D.1: the two kinds of
label the thesis contrasts), computed from drawn factors so the rendered faces do not change.

- ``glasses`` is a drawn factor: its features (``glasses_shape``, ``glasses_size``,
  ``glasses_colour``, ``glasses_thickness``) only show when y = 1 (the "glasses" type of §6.3.1).
- ``smile`` is derived: y = 1 when the expression is ``happy`` with ``intensity`` >=
  :data:`SMILE_MIN_INTENSITY` (a weaker happy face is hard to tell from neutral). Its features
  exist for both values (the "smile" type): for y = 1 the happy field's mouth curvature and
  opening, scaled by the intensity; for y = 0 the mouth width and shape of the other expressions
  (and of faint happy ones) at their intensities. The world's expressions give this structure, so
  no smile factor is drawn.
"""

from __future__ import annotations

import torch

from mien.data.factors import Factor
from mien.data.world.geometry import EXPRESSIONS

SMILE_MIN_INTENSITY = 0.2
DERIVED_LABELS: dict[str, Factor] = {"smile": Factor("smile", "binary", values=("no", "yes"), group="expression")}


def derive_label(name: str, factors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The derived label ``name`` (0/1, long) of a batch of drawn world factors."""
    if name == "smile":
        happy = factors["expression"].long() == EXPRESSIONS.index("happy")
        return (happy & (factors["intensity"].float() >= SMILE_MIN_INTENSITY)).long()
    raise KeyError(name)
