"""Autoencoder and VAE family (mien.models.vae): training, the beta-TCVAE MWS estimator against a
brute-force computation, annealing schedules, FactorVAE's two groups, and the shared interface of
every registered model."""

import math

import pytest
import torch

from mien.errors import ConfigError
from mien.models import build_model, families
from mien.models.vae import kl_normal, permute_dims, tc_mws
from model_helpers import SMALL, mean_of, reconstruction_vs_mean, train, world_pool

TRAINED = {
    "ae": {},
    "vae": {},
    "beta_vae": {},
    "capacity_vae": {"capacity_max": 20.0, "capacity_steps": 150},
    "tcvae": {"dataset_size": 512},
    "vae-sigma": {"likelihood": "sigma"},
    "vae-bernoulli": {"likelihood": "bernoulli"},
}


def check_trained(model, hist, drop=0.4):
    """Loss lowered by ``drop`` of the first loss's size (Gaussian NLLs can be negative) and
    held-out reconstructions better than the mean image."""
    first, last = mean_of(hist, "loss", slice(0, 10)), mean_of(hist, "loss", slice(-20, None))
    assert last < first - drop * abs(first), (first, last)
    mse, base = reconstruction_vs_mean(model, world_pool(256, seed=1)["image"])
    assert mse < 0.75 * base, (mse, base)


@pytest.mark.parametrize("key", list(TRAINED))
def test_training_lowers_loss_and_beats_the_mean_image(key):
    model, hist = train({"name": key.split("-")[0], **TRAINED[key]})
    # the Bernoulli NLL of grey-level targets has a large floor (their entropy): small relative drop
    check_trained(model, hist, drop=0.05 if key == "vae-bernoulli" else 0.4)
    assert all(math.isfinite(h["loss"]) for h in hist)


def test_factorvae_trains_with_two_phases_whose_groups_stay_separate():
    model, hist = train({"name": "factorvae", "disc_hidden": 64, "disc_layers": 2})
    check_trained(model, hist)
    assert mean_of(hist, "loss_disc", slice(-20, None)) < math.log(2) - 0.05
    groups = model.param_groups()
    disc = {id(p) for p in model.discriminator.parameters()}
    assert disc == {id(p) for p in groups["disc"]}
    assert not disc & {id(p) for p in groups["model"]}
    assert len(groups["model"]) + len(groups["disc"]) == len(list(model.parameters()))
    # the discriminator phase comes first and reaches only the discriminator
    assert [(p.name, p.group) for p in model.phases()] == [("disc", "disc"), ("model", "model")]
    model.train()
    model.zero_grad(set_to_none=True)
    batch = {"image": world_pool()["image"][:16]}
    model.discriminator_loss(batch)["loss"].backward()
    assert all(p.grad is None for p in groups["model"])
    assert all(p.grad is not None for p in groups["disc"])


def test_factorvae_permutes_codes_of_a_second_batch():
    """Kim & Mnih Alg. 1: D's real codes come from the first half, its permuted codes from the
    second; changing the second half changes only the permuted side."""
    model = build_model({"name": "factorvae", **SMALL, "disc_hidden": 16, "disc_layers": 1}).train()
    x = world_pool()["image"][:16]
    first, second = model.halves({"image": x})
    assert torch.equal(first["image"], x[:8]) and torch.equal(second["image"], x[8:])
    seen = []
    model.discriminator.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    other = torch.cat([x[:8], x.flip(0)[:8]])
    for images in (x, other):
        torch.manual_seed(0)
        model.discriminator_loss({"image": images})
    assert torch.equal(seen[0], seen[2])  # real codes: the same first half, same noise
    assert not torch.allclose(seen[1], seen[3])  # permuted codes: from the changed second half
    with pytest.raises(ConfigError, match="at least 4"):
        model.discriminator_loss({"image": x[:3]})


def test_permute_dims_shuffles_each_dimension_independently():
    z = torch.arange(200.0).view(100, 2) * torch.tensor([1.0, -1.0])
    p = permute_dims(z, torch.Generator().manual_seed(0))
    for d in range(2):
        assert torch.equal(p[:, d].sort().values, z[:, d].sort().values)
    # rows are no longer intact pairs
    assert (p[:, 0] != -p[:, 1]).float().mean() > 0.9


def _brute_force_mws(z, mu, logvar, n_data):
    """Chen et al. (2018) MWS estimator with explicit loops over samples and dimensions."""
    m, d = len(z), len(z[0])

    def log_q(zv, j, k):
        var = math.exp(logvar[j][k])
        return -0.5 * (math.log(2 * math.pi) + logvar[j][k] + (zv - mu[j][k]) ** 2 / var)

    def logsumexp(values):
        top = max(values)
        return top + math.log(sum(math.exp(v - top) for v in values))

    mi = tc = dwkl = 0.0
    for i in range(m):
        joint = logsumexp([sum(log_q(z[i][k], j, k) for k in range(d)) for j in range(m)]) - math.log(n_data * m)
        marginals = sum(logsumexp([log_q(z[i][k], j, k) for j in range(m)]) - math.log(n_data * m)
                        for k in range(d))
        own = sum(log_q(z[i][k], i, k) for k in range(d))
        prior = sum(-0.5 * (math.log(2 * math.pi) + z[i][k] ** 2) for k in range(d))
        mi += (own - joint) / m
        tc += (joint - marginals) / m
        dwkl += (marginals - prior) / m
    return mi, tc, dwkl


def test_tc_mws_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(7, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(7, 3, generator=g, dtype=torch.float64) * 0.5 - 1
    z = mu + torch.exp(0.5 * logvar) * torch.randn(7, 3, generator=g, dtype=torch.float64)
    got = tc_mws(z, mu, logvar, dataset_size=1000)
    want = _brute_force_mws(z.tolist(), mu.tolist(), logvar.tolist(), 1000)
    for a, b in zip(got, want):
        assert float(a) == pytest.approx(b, rel=1e-9, abs=1e-9)
    # the three terms add up to the MWS estimate of E[log q(z|x) - log p(z)], whose expectation is the KL
    assert sum(float(t) for t in got) == pytest.approx(sum(want), rel=1e-9)


def test_tc_is_lower_for_factorised_than_for_correlated_posteriors():
    g = torch.Generator().manual_seed(0)
    m, d = 256, 4
    logvar = torch.full((m, d), math.log(0.3 ** 2))
    independent = torch.randn(m, d, generator=g)
    shared = torch.randn(m, 1, generator=g).expand(m, d) + 0.05 * torch.randn(m, d, generator=g)
    tcs = []
    for mu in (independent, shared):
        z = mu + 0.3 * torch.randn(m, d, generator=g)
        tcs.append(float(tc_mws(z, mu, logvar, dataset_size=m)[1]))
    assert tcs[0] + 1.0 < tcs[1], tcs


def test_kl_warmup_ramps_beta_linearly():
    model = build_model({"name": "vae", **SMALL, "beta": 2.0, "kl_warmup_steps": 100})
    batch = {"image": world_pool()["image"][:4]}
    for step, want in [(0, 0.0), (50, 1.0), (100, 2.0), (500, 2.0)]:
        assert float(model.loss(batch, step)["beta"]) == pytest.approx(want)


def test_capacity_ramps_and_enters_the_loss_as_absolute_gap():
    model = build_model({"name": "capacity_vae", **SMALL, "gamma": 10.0, "capacity_max": 8.0, "capacity_steps": 40})
    batch = {"image": world_pool()["image"][:4]}
    for step, want in [(0, 0.0), (10, 2.0), (40, 8.0), (99, 8.0)]:
        torch.manual_seed(0)
        out = model.loss(batch, step)
        assert float(out["capacity"]) == pytest.approx(want)
        assert float(out["loss"].detach()) == pytest.approx(float(out["nll"] + 10.0 * (out["kl"] - want).abs()), rel=1e-5)


def test_sigma_vae_uses_the_closed_form_optimal_variance():
    model = build_model({"name": "vae", **SMALL, "likelihood": "sigma"})
    x = world_pool()["image"][:8]
    out = torch.zeros_like(x)
    mse = float(((x - out) ** 2).mean())
    dims = x[0].numel()
    # at sigma^2 = MSE the per-image NLL averages to D/2 (1 + log(2 pi MSE))
    assert float(model.nll(x, out).mean()) == pytest.approx(0.5 * dims * (1 + math.log(2 * math.pi * mse)), rel=1e-5)


def test_bernoulli_decoder_returns_images_in_range_and_gaussian_kl_is_analytic():
    model = build_model({"name": "vae", **SMALL, "likelihood": "bernoulli"}).eval()
    images = model.sample(4, generator=torch.Generator().manual_seed(0))["image"]
    assert images.min() >= -1 and images.max() <= 1
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(4.0)]])
    # KL(N(1,1)||N(0,1)) = 0.5; KL(N(0,4)||N(0,1)) = 0.5 (4 - 1 - log 4)
    assert float(kl_normal(mu, logvar)) == pytest.approx(0.5 + 0.5 * (3 - math.log(4.0)))


AUTOENCODERS = ["ae", "arvae", "beta_vae", "capacity_vae", "factorvae", "klae", "tcvae", "vae", "vqvae"]


def test_every_autoencoder_family_is_covered():
    sequence_models = {"expr4d", "actor"}  # tested in test_expr4d.py
    networks = {"evaluator", "sequence_classifier", "noisy_classifier"}  # test_evaluator.py, test_diffusion.py
    gans = {"stylegan", "cgan", "infogan", "psp"}  # test_stylegan.py, test_gan_invert.py
    label_models = {"m2", "ccvae", "jdvae", "cvqvae"}  # test_jdvae.py, test_cvqvae.py
    mesh_models = {"meshdecoder", "dvae", "mesh_classifier"}  # test_mesh_decoder.py, test_dvae.py
    assert {n for n in families() if not n.endswith("_test")} == (set(AUTOENCODERS) | {"diffusion"} | sequence_models
                                                                  | networks | gans | label_models | mesh_models)


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_interface_shapes_and_seeded_sampling(name):
    extra = {"attributes": ["yaw"]} if name == "arvae" else {}
    model = build_model({"name": name, **SMALL, **extra}).eval()
    x = world_pool()["image"][:3]
    with torch.no_grad():
        z = model.encode(x)
        assert model.decode(z).shape == x.shape
        assert model.reconstruct(x).shape == x.shape
        a = model.sample(5, generator=torch.Generator().manual_seed(3))["image"]
        b = model.sample(5, generator=torch.Generator().manual_seed(3))["image"]
    assert a.shape == (5, 3, 32, 32) and torch.equal(a, b)
    assert z[0].numel() == model.latent_dim
    with pytest.raises(ConfigError):
        model.sample(2, cond=torch.zeros(2))
    # the config dict rebuilds the same architecture (what a checkpoint stores)
    twin = build_model(model.config_dict())
    twin.load_state_dict(model.state_dict())
    assert twin.config == model.config


@pytest.mark.parametrize("name", sorted(families()))
def test_unknown_config_key_is_a_config_error(name):
    with pytest.raises(ConfigError, match="nosuchkey"):
        build_model({"name": name, "nosuchkey": 1})


@pytest.mark.parametrize("bad", [{"likelihood": "poisson"}, {"sigma": 0.0}, {"latent_dim": 0}, {"beta": -1.0},
                                 {"image_size": 36, "widths": [8, 16, 32]}])
def test_bad_vae_config_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        build_model({"name": "vae", **bad})


def test_missing_image_is_a_config_error():
    model = build_model({"name": "vae", **SMALL})
    with pytest.raises(ConfigError, match="image"):
        model.loss({"landmarks2d": torch.zeros(2, 68, 2)})
