"""Semi-supervised label models on one backbone (Zou thesis ch. 5-6, digest C-D): M2 (Kingma et al.
2014), CCVAE (Joy et al. 2021), JDVAE (Zou §5.3) and CVQVAE (Zou §6.3), each a (config, model) pair."""

from mien.models.semisup.ccvae import CCVAE, CCVAEConfig
from mien.models.semisup.cvqvae import CVQVAE, CVQVAEConfig
from mien.models.semisup.common import SemiSupConfig, SemiSupModel
from mien.models.semisup.jdvae import JDVAE, JDVAEConfig
from mien.models.semisup.m2 import M2, M2Config

__all__ = ["CCVAE", "CCVAEConfig", "CVQVAE", "CVQVAEConfig", "JDVAE", "JDVAEConfig", "M2", "M2Config", "SemiSupConfig", "SemiSupModel"]
