"""Model families, one file (or folder) each; importing this package registers them by name."""

from mien.models import arvae, diffusion, expr4d, klae, vae, vqvae  # noqa: F401  (register the families)
from mien.models.base import MODELS, GenerativeModel, ModelConfig, build_model, register

__all__ = ["MODELS", "GenerativeModel", "ModelConfig", "build_model", "register"]
