"""VQ-VAE (mien.models.vqvae): training with and without EMA uses many codes, straight-through
gradients reach the encoder, and the index interface is consistent."""

import pytest
import torch

from mien.errors import ConfigError
from mien.models import build_model
from model_helpers import SMALL, mean_of, reconstruction_vs_mean, train, world_pool


@pytest.mark.parametrize("ema_decay", [0.0, 0.99])
def test_training_uses_many_codes_and_beats_the_mean_image(ema_decay):
    model, hist = train({"name": "vqvae", "num_codes": 32, "code_dim": 8, "ema_decay": ema_decay})
    assert mean_of(hist, "loss", slice(-20, None)) < 0.6 * mean_of(hist, "loss", slice(0, 10))
    assert mean_of(hist, "perplexity", slice(-20, None)) > 8
    assert mean_of(hist, "codes_used", slice(-20, None)) > 0.4
    mse, base = reconstruction_vs_mean(model, world_pool(256, seed=1)["image"])
    assert mse < 0.75 * base, (mse, base)
    if ema_decay:
        assert all(h["codebook"] == 0 for h in hist)


def test_straight_through_gradient_reaches_the_encoder():
    # with EMA and beta = 0 the loss is the reconstruction error alone
    model = build_model({"name": "vqvae", **SMALL, "num_codes": 16, "code_dim": 4, "ema_decay": 0.99, "beta": 0.0})
    out = model.loss({"image": world_pool()["image"][:8]})
    assert float(out["commitment"]) > 0 and float(out["codebook"]) == 0
    out["loss"].backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert model.codebook.grad is None


def test_codebook_loss_trains_the_codebook_without_ema_only():
    plain = build_model({"name": "vqvae", **SMALL, "num_codes": 16, "code_dim": 4})
    assert any(p is plain.codebook for p in plain.param_groups()["model"])
    plain.loss({"image": world_pool()["image"][:8]})["loss"].backward()
    assert plain.codebook.grad is not None and plain.codebook.grad.abs().sum() > 0

    ema = build_model({"name": "vqvae", **SMALL, "num_codes": 16, "code_dim": 4, "ema_decay": 0.9})
    assert not any(p is ema.codebook for p in ema.param_groups()["model"])
    batch = {"image": world_pool()["image"][:8]}
    ema.fit_data(batch)  # the engine's step before step 0: codebook from encoder vectors
    before = ema.codebook.detach().clone()
    ema.loss(batch)
    assert not torch.allclose(before, ema.codebook)
    ema.eval()
    frozen = ema.codebook.detach().clone()
    ema.loss(batch)
    assert torch.equal(frozen, ema.codebook)


def test_codebook_initialised_from_encoder_outputs_on_first_training_batch():
    model = build_model({"name": "vqvae", **SMALL, "num_codes": 8, "code_dim": 4})
    x = world_pool()["image"][:4]
    with torch.no_grad():
        z_e = model.encoder(x).permute(0, 2, 3, 1).reshape(-1, 4)
        model.loss({"image": x})
    assert not bool(model.initialised)  # a loss call fits nothing
    assert model.fit_data({"image": x}) and model.fit_data({"image": x}) == {}  # once
    # every code is one of the encoder vectors of that batch
    gap = (model.codebook.detach()[:, None] - z_e[None]).abs().amax(-1)
    assert float(gap.min(1).values.max()) < 1e-6
    assert bool(model.initialised)


def test_index_interface_and_uniform_sampling():
    model = build_model({"name": "vqvae", **SMALL, "num_codes": 16, "code_dim": 4}).eval()
    x = world_pool()["image"][:2]
    idx = model.encode_indices(x)
    assert idx.shape == (2, 4, 4) and idx.dtype == torch.long
    zq = model.encode(x)
    assert zq.shape == (2, *model.latent_shape) and model.latent_dim == 4 * 4 * 4
    assert torch.equal(zq, model.codebook[idx].permute(0, 3, 1, 2))
    assert torch.allclose(model.decode_indices(idx), model.decode(zq))
    assert torch.allclose(model.reconstruct(x), model.decode(zq))
    assert model.sample(3, generator=torch.Generator().manual_seed(0))["image"].shape == (3, 3, 32, 32)


@pytest.mark.parametrize("bad", [{"num_codes": 1}, {"ema_decay": 1.0}, {"beta": -0.1}, {"code_dim": 0}])
def test_bad_vqvae_config_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        build_model({"name": "vqvae", **bad})
