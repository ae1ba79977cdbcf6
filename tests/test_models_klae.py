"""The KL-regularised spatial autoencoder and latent diffusion over it."""

import pytest
import torch

from mien.data.world import WorldDataset
from mien.errors import ConfigError
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
    with pytest.raises(ConfigError, match="latent scale"):
        ldm.loss({"image": data[:8]})
    assert ldm.fit_data({"image": data[:8]})["latent_scale"] > 0
    assert torch.isfinite(ldm.loss({"image": data[:8]})["loss"]) and float(ldm.scale) > 0
    assert ldm.sample(2, steps=3)["image"].shape == (2, 3, 32, 32)


def test_perceptual_term_is_lpips_mien_and_stays_out_of_the_weights():
    from mien.evaluator import load_evaluator
    from mien.metrics.image import lpips_mien

    x = WorldDataset(4, 32, 1).batch(range(4))["image"]
    torch.manual_seed(0)
    config = {"name": "klae", "image_size": 32, "widths": [16, 32], "blocks": 0, "kl_weight": 0.0}
    plain, perceptual = build_model(config), build_model({**config, "perceptual_weight": 2.0})
    perceptual.load_state_dict(plain.state_dict())
    torch.manual_seed(1)
    a = plain.loss({"image": x})
    torch.manual_seed(1)
    b = perceptual.loss({"image": x})
    torch.manual_seed(1)
    mu, logvar = perceptual.posterior(x)
    x_hat = perceptual.decode(mu + torch.randn_like(mu) * (0.5 * logvar).exp())
    expected = lpips_mien(x_hat.detach(), x, load_evaluator(32))
    assert abs(float(b["perceptual"]) - expected) < 1e-5
    assert abs(float(b["loss"]) - float(a["loss"]) - 2.0 * expected) < 1e-4
    b["loss"].backward()
    assert perceptual.decoder[0].weight.grad.abs().sum() > 0
    assert set(perceptual.state_dict()) == set(plain.state_dict())
    assert all(not p.requires_grad or p.grad is None for p in load_evaluator(32).parameters())
