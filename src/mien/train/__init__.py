"""The training engine: one Lightning module for every model and every schedule (phases)."""

from mien.models.checkpoint import load
from mien.train.config import RunConfig, load_run_config, run_config
from mien.train.run import fit

__all__ = ["fit", "load", "RunConfig", "load_run_config", "run_config"]
