"""Labels derived from the world's factors (Zou thesis ch. 5-6, digest C and D.1: the two kinds of
label the thesis contrasts), computed from drawn factors so the rendered faces do not change.

- ``glasses`` is a drawn factor: its features (``glasses_shape``, ``glasses_size``,
  ``glasses_colour``, ``glasses_thickness``, ``glasses_tint``: clear lenses to sunglasses, as
  CelebA's Eyeglasses include both) only show when y = 1 (the "glasses" type of §6.3.1).
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
from mien.data.world.factors import WORLD_FACTORS
from mien.data.world.geometry import EXPRESSIONS

SMILE_MIN_INTENSITY = 0.2
DERIVED_LABELS: dict[str, Factor] = {"smile": Factor("smile", "binary", values=("no", "yes"), group="expression")}


def derive_label(name: str, factors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The derived label ``name`` (0/1, long) of a batch of drawn world factors."""
    if name == "smile":
        happy = factors["expression"].long() == EXPRESSIONS.index("happy")
        return (happy & (factors["intensity"].float() >= SMILE_MIN_INTENSITY)).long()
    raise KeyError(name)


# The factors a label swap exchanges: the label itself (when drawn) and its features (Zou §5.3.1,
# §6.3.1). A smile is carried by the expression and its intensity, which also set the label.
LABEL_FEATURES: dict[str, tuple[str, ...]] = {
    "glasses": ("glasses", "glasses_shape", "glasses_size", "glasses_colour", "glasses_thickness",
                "glasses_tint"),
    "smile": ("expression", "intensity"),
}


def swapped_factors(name: str, fa: dict[str, torch.Tensor], fb: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """The factors of the exact swap of label ``name`` between faces a and b (row by row): face a
    with b's label and features, and face b with a's; everything else stays (the world's version
    of decoding d(y_b, z_a, u_b) and d(y_a, z_b, u_a), Zou §5.4, §6.4). Derived labels are
    recomputed."""
    if name not in LABEL_FEATURES:
        raise KeyError(name)
    a, b = dict(fa), dict(fb)
    for k in LABEL_FEATURES[name]:
        a[k], b[k] = fb[k], fa[k]
    for f in (a, b):
        for d in DERIVED_LABELS:
            if d in f:
                f[d] = derive_label(d, f)
    return a, b


def renderable(factors: dict) -> bool:
    """Whether ``factors`` hold every drawn world factor, so the faces can be re-rendered."""
    return all(f.name in factors for f in WORLD_FACTORS)
