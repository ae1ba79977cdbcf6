"""Zou thesis ch. 4 on meshes: the DVAE and its sigma-VAE baseline (:mod:`.dvae`), the independent
classifiers C and C_recon with saliency maps (:mod:`.classifier`), missing data (:mod:`.missing`)."""

from mien.models.mesh_dvae.classifier import MeshClassifier, MeshClassifierConfig
from mien.models.mesh_dvae.dvae import DVAE, DVAEConfig

__all__ = ["DVAE", "DVAEConfig", "MeshClassifier", "MeshClassifierConfig"]
