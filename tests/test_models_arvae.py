"""Attribute-regularised VAE (mien.models.arvae): the regularised dimension becomes monotone in its
attribute, the regulariser matches its formula, and missing factors are clear errors."""

import pytest
import torch

from mien.errors import ConfigError
from mien.models import build_model
from mien.models.arvae import attribute_regularisation
from model_helpers import SMALL, train, world_pool

try:
    from scipy.stats import spearmanr
except ImportError:  # scipy is not a dependency: Spearman = Pearson of the ranks (no ties here)
    spearmanr = None


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    if spearmanr is not None:
        return float(spearmanr(a.numpy(), b.numpy())[0])
    ra, rb = (v.argsort().argsort().double() for v in (a, b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def test_regularised_dimension_is_monotone_in_its_attribute_and_a_plain_vae_is_not():
    # yaw varies over [-35, 35] degrees; a broad likelihood (sigma = 1) and gamma = 100 let a
    # 200-step run organise the latent space
    train_data, held_out = world_pool(512, seed=0), world_pool(256, seed=1)
    yaw = held_out["factors"]["yaw"]
    ar, hist = train({"name": "arvae", "attributes": ["yaw"], "sigma": 1.0, "gamma": 100.0}, train_data)
    assert hist[-1]["ar_yaw"] < hist[0]["ar_yaw"]
    with torch.no_grad():
        z = ar.encode(held_out["image"])
    rho_ar = spearman(z[:, ar.attribute_dims()["yaw"]], yaw)
    assert rho_ar > 0.8, rho_ar

    vae, _ = train({"name": "vae", "sigma": 1.0}, train_data)
    with torch.no_grad():
        z = vae.encode(held_out["image"])
    best_plain = max(abs(spearman(z[:, i], yaw)) for i in range(z.shape[1]))
    assert best_plain < rho_ar, (best_plain, rho_ar)


def test_regulariser_is_the_mae_of_tanh_differences_against_signs():
    a = torch.tensor([0.1, 0.5, 0.3])
    z = torch.tensor([0.0, 2.0, 1.0])
    d_r = z[:, None] - z[None, :]
    d_a = a[:, None] - a[None, :]
    want = (torch.tanh(3.0 * d_r) - torch.sign(d_a)).abs().mean()
    assert float(attribute_regularisation(z, a, 3.0)) == pytest.approx(float(want))
    # a code ordered like the attribute (and spread out) scores near 0, a reversed one near 2 * 6/9
    assert float(attribute_regularisation(100 * a, a, 1.0)) < 1e-6
    assert float(attribute_regularisation(-100 * a, a, 1.0)) == pytest.approx(2 * 6 / 9, rel=1e-5)


def test_loss_logs_one_term_per_attribute_and_maps_dimensions():
    model = build_model({"name": "arvae", **SMALL, "attributes": ["yaw", "intensity"]})
    assert model.attribute_dims() == {"yaw": 0, "intensity": 1}
    batch = world_pool()
    out = model.loss({"image": batch["image"][:8], "factors": {k: v[:8] for k, v in batch["factors"].items()}})
    assert {"loss", "kl", "nll", "ar_yaw", "ar_intensity"} <= set(out)
    assert torch.isfinite(out["loss"])


def test_mean_code_regularises_the_posterior_mean_and_sample_code_the_draw():
    batch = world_pool()
    batch = {"image": batch["image"][:8], "factors": {k: v[:8] for k, v in batch["factors"].items()}}
    for code in ("mean", "sample"):
        torch.manual_seed(0)
        model = build_model({"name": "arvae", **SMALL, "attributes": ["yaw"], "delta": 10.0, "code": code})
        with torch.no_grad():
            mu, _ = model.posterior(batch["image"])
            on_mu = attribute_regularisation(mu[:, 0], batch["factors"]["yaw"], 10.0)
            terms = [float(model.loss(batch)["ar_yaw"]) for _ in range(3)]
        if code == "mean":
            assert terms == pytest.approx([float(on_mu)] * 3, rel=1e-6)
        else:  # a fresh z ~ q(z|x) each call
            assert len(set(terms)) == 3


def test_missing_factors_or_attribute_is_a_config_error():
    model = build_model({"name": "arvae", **SMALL, "attributes": ["yaw"]})
    images = world_pool()["image"][:4]
    with pytest.raises(ConfigError, match="factors"):
        model.loss({"image": images})
    with pytest.raises(ConfigError, match="yaw"):
        model.loss({"image": images, "factors": {"age": torch.rand(4)}})


@pytest.mark.parametrize("bad", [{"attributes": []}, {"attributes": ["yaw", "yaw"]},
                                 {"attributes": ["a", "b", "c"], "latent_dim": 2}, {"delta": 0.0},
                                 {"code": "median"}])
def test_bad_arvae_config_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        build_model({"name": "arvae", **bad})
