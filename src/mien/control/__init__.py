"""Reading and editing latent spaces: directions and their estimators, inversion, editing,
interpolation."""

from mien.control.direction import Direction, apply, record_h, render, traverse
from mien.control.directions import AxisDirection, MeanDifference
from mien.control.invert import edit, invert
from mien.control.nrsfm import RankOneNRSfM

__all__ = ["AxisDirection", "Direction", "MeanDifference", "RankOneNRSfM", "apply", "edit", "invert", "record_h", "render", "traverse"]
