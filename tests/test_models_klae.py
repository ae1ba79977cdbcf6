"""The KL-regularised spatial autoencoder and latent diffusion over it."""

import torch

from mien.data.world import WorldDataset
from mien.models import build_model


def test_klae_learns_to_reconstruct_and_serves_as_a_first_stage():
    data = WorldDataset(128, 32, 0, fixed={"pitch": 0, "roll": 0}).batch(range(128))["image"]
    torch.manual_seed(0)
    ae = build_model({"name": "klae", "image_size": 32, "widths": [16, 32], "blocks": 0, "latent_channels": 4})
    opt = torch.optim.Adam(ae.parameters(), lr=2e-3)
    for _ in range(120):
        idx = torch.randint(128, (32,))
        terms = ae.loss({"image": data[idx]})
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    with torch.no_grad():
        mse = ((ae.reconstruct(data) - data) ** 2).mean()
        baseline = ((data - data.mean(0)) ** 2).mean()
    assert mse < 0.6 * baseline
    assert ae.encode_latent(data[:2]).shape == (2, 4, 8, 8)
    ldm = build_model({"name": "diffusion", "image_size": 32, "autoencoder_config": ae.config_dict(),
                       "denoiser": {"preset": "tiny", "channels": [8, 16], "norm_groups": 4}})
    ldm.autoencoder.load_state_dict(ae.state_dict())
    ldm.train()
    assert torch.isfinite(ldm.loss({"image": data[:8]})["loss"]) and float(ldm.scale) > 0
    assert ldm.sample(2, steps=3).shape == (2, 3, 32, 32)
