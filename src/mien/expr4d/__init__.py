"""System Z1 (Zou thesis ch. 3): 4D facial expression generation by a DDPM over landmark
sequences, steered at sampling time by label, text, partial sequences and a given neutral face."""

from mien.expr4d.baselines import Actor, ActorConfig, mean_imputation
from mien.expr4d.control import fill, fill_mask, geometry_adaptive, label_control, text_control, unconditional
from mien.expr4d.model import Expr4D, Expr4DConfig

__all__ = ["Actor", "ActorConfig", "Expr4D", "Expr4DConfig", "fill", "fill_mask", "geometry_adaptive",
           "label_control", "mean_imputation", "text_control", "unconditional"]
