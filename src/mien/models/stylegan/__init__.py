"""The StyleGAN2 family (``stylegan``, ``cgan``, ``infogan``): Haas thesis Ch. 2, Zou thesis Ch. 2."""

from mien.models.stylegan.model import ConditionalStyleGAN, InfoStyleGAN, StyleGAN, StyleGANConfig

__all__ = ["StyleGAN", "StyleGANConfig", "ConditionalStyleGAN", "InfoStyleGAN"]
