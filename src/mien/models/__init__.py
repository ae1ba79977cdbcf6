"""Model families, one file each; importing this package registers them by name."""

from mien.models import arvae, diffusion, klae, vae, vqvae  # noqa: F401  (register the families)
from mien.models.base import MODELS, GenerativeModel, ModelConfig, build_model, register

import mien.expr4d  # noqa: E402,F401  (registers expr4d and actor, Zou ch. 3; it needs models.base first)

__all__ = ["MODELS", "GenerativeModel", "ModelConfig", "build_model", "register"]
