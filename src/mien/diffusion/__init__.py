"""The diffusion core: noise schedules, the generalised DDPM/DDIM sampler, guidance, inversion,
U-Net denoisers and h-space hooks (Pikoulis ch. 3; Haas ch. 6 and Paper V)."""
