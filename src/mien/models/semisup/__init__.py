"""Semi-supervised label models on one backbone (Zou thesis ch. 5, digest C): M2 (Kingma et al.
2014), CCVAE (Joy et al. 2021) and JDVAE (Zou §5.3), each a (config, model) pair."""

from mien.models.semisup.ccvae import CCVAE, CCVAEConfig
from mien.models.semisup.common import SemiSupConfig, SemiSupModel
from mien.models.semisup.jdvae import JDVAE, JDVAEConfig
from mien.models.semisup.m2 import M2, M2Config

__all__ = ["CCVAE", "CCVAEConfig", "JDVAE", "JDVAEConfig", "M2", "M2Config", "SemiSupConfig", "SemiSupModel"]
