"""System Z1 (Zou thesis ch. 3): the 4D facial expression DDPM over landmark sequences and the
ACTOR-style baseline; importing this package registers ``expr4d`` and ``actor``. Its control at
sampling time by text, partial sequences and a neutral face (Alg. 2-4) is :mod:`mien.control.expr4d`."""

from mien.models.expr4d.baselines import Actor, ActorConfig, mean_imputation
from mien.models.expr4d.model import Expr4D, Expr4DConfig
from mien.models.expr4d.sampling import label_control, unconditional

__all__ = ["Actor", "ActorConfig", "Expr4D", "Expr4DConfig", "label_control", "mean_imputation", "unconditional"]
