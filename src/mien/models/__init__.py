"""Model families, one file (or package) each, built by name from a config (``build_model``);
``families()`` lists them."""

from mien.models.base import GenerativeModel, ModelConfig, Phase, build_model, families, register

__all__ = ["GenerativeModel", "ModelConfig", "Phase", "build_model", "families", "register"]
