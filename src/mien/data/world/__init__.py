"""The procedural face world: mien's embedded data set of faces with known generative factors
and exact landmarks (identity shape, appearance, attributes, expression, pose) and of 4D
expression sequences."""

from mien.data.world.dataset import WorldDataset
from mien.data.world.factors import WORLD_FACTORS, Correlated, Factorial, IID, make_design
from mien.data.world.geometry import ACTIONS, EXPRESSIONS, SHAPE_MODES
from mien.data.world.render import render as render_faces
from mien.data.world.sequences import (SEQUENCE_CLASSES, WorldSequenceDataset, describe, pad_sequences,
                                       render_sequence, save_animation)

__all__ = ["WorldDataset", "WorldSequenceDataset", "WORLD_FACTORS", "IID", "Factorial", "Correlated",
           "make_design", "render_faces", "render_sequence", "save_animation", "pad_sequences", "describe",
           "EXPRESSIONS", "ACTIONS", "SHAPE_MODES", "SEQUENCE_CLASSES"]
