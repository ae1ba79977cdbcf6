"""Perceptual path length: closed forms of analytic generators (lerp in W, slerp in Z, 'end' vs
'full'), the 1st-99th percentile filter against numpy, epsilon handling, fixed noise per pair on
the real StyleGAN2, and ``mien eval ckpt`` on a GAN checkpoint."""

import json
import math

import numpy as np
import pytest
import torch
from model_helpers import mien_main  # noqa: F401 (fixture)

from mien.errors import ConfigError, DataError
from mien.metrics import ppl
from mien.models import build_model, checkpoint

D = 6


def sq_l2(a, b):
    return (a - b).pow(2).flatten(1).sum(1)


class Analytic(torch.nn.Module):
    """A float64 'GAN' with the identity as mapping and g(w) = A w, or g(w) = (u . w)^2 q."""

    def __init__(self, kind="linear", seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(12, D, generator=g, dtype=torch.float64)
        self.u = torch.nn.functional.normalize(torch.randn(D, generator=g, dtype=torch.float64), dim=0)
        self.q = torch.randn(12, generator=g, dtype=torch.float64)
        self.kind = kind

    def draw_z(self, n, generator=None):
        return torch.randn(n, D, generator=generator, dtype=torch.float64), [], None

    def map(self, z, labels=None):
        return z

    def broadcast(self, w):
        return w[:, None]

    def synthesize(self, ws, noise=None):
        w = ws[:, 0]
        x = w @ self.A.T if self.kind == "linear" else (w @ self.u)[:, None] ** 2 * self.q
        return x.reshape(-1, 3, 2, 2)

    def noise_maps(self, n, generator=None):
        return []


def pairs(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    z0, z1 = torch.randn(2, n, D, generator=g, dtype=torch.float64)
    return z0, z1, torch.rand(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("eps", [1e-4, 1e-2])
def test_w_lerp_of_a_linear_generator_is_the_squared_image_of_the_step(eps):
    """g(w) = A w, d = squared L2: eps^-2 ||A (lerp(t + eps) - lerp(t))||^2 = ||A (w2 - w1)||^2, any t, any eps."""
    z0, z1, t = pairs(50)
    got = ppl.pair_lengths(Analytic(), z0, z1, t, t + eps, "w", sq_l2, eps)
    want = ((z1 - z0) @ Analytic().A.T).pow(2).sum(1)
    torch.testing.assert_close(got, want, rtol=1e-8, atol=0)


def test_z_slerp_matches_the_derivative_of_the_great_circle():
    """In Z the path is the unit great circle from a^ to b^; its velocity at t is
    theta (-a^ sin(t theta) + c^ cos(t theta)), so the value is theta^2 ||A v||^2 at the step's midpoint."""
    model, eps = Analytic(), 1e-4
    z0, z1, t = pairs(50)
    got = ppl.pair_lengths(model, z0, z1, t, t + eps, "z", sq_l2, eps)
    a, b = torch.nn.functional.normalize(z0, dim=1), torch.nn.functional.normalize(z1, dim=1)
    cos = (a * b).sum(1, keepdim=True)
    theta = torch.acos(cos)
    c = torch.nn.functional.normalize(b - cos * a, dim=1)
    m = (t + eps / 2)[:, None]
    v = theta * (-a * torch.sin(m * theta) + c * torch.cos(m * theta))
    torch.testing.assert_close(got, (v @ model.A.T).pow(2).sum(1), rtol=1e-6, atol=0)


def test_slerp_ends_and_unit_norm():
    z0, z1, _ = pairs(8)
    torch.testing.assert_close(ppl.slerp(z0, z1, torch.zeros(8, dtype=torch.float64)),
                               torch.nn.functional.normalize(z0, dim=1))
    torch.testing.assert_close(ppl.slerp(z0, z1, torch.ones(8, dtype=torch.float64)),
                               torch.nn.functional.normalize(z1, dim=1))
    mid = ppl.slerp(z0, z1, torch.full((8,), 0.3, dtype=torch.float64))
    torch.testing.assert_close(mid.norm(dim=1), torch.ones(8, dtype=torch.float64))


def _mean_within(values, expected, sigmas=5.0):
    v = values.double()
    assert abs(v.mean().item() - expected) < sigmas * v.std().item() / math.sqrt(len(v)), (v.mean().item(), expected)


def test_linear_generator_expectation_in_w():
    """w1, w2 ~ N(0, I): E ||A (w2 - w1)||^2 = 2 tr(A^T A)."""
    model = Analytic()
    values = ppl.path_lengths(model, 20000, "w", "full", distance=sq_l2, batch_size=5000)
    _mean_within(values, 2 * model.A.pow(2).sum().item())


def test_end_and_full_sampling_of_a_quadratic_generator():
    """g(w) = (u . w)^2 q: the value is 4 s^2 (x1 - x0)^2 ||q||^2 with s = (u . w(t)), x_i = u . w_i, whose
    expectation is ||q||^2 (8 ((1 - t)^2 + t^2) + 8 (2t - 1)^2): 16 ||q||^2 at the ends and 8 ||q||^2
    averaged over t ~ U(0, 1)."""
    model = Analytic("quadratic")
    q2 = model.q.pow(2).sum().item()
    full = ppl.path_lengths(model, 40000, "w", "full", distance=sq_l2, batch_size=10000, seed=1)
    end = ppl.path_lengths(model, 40000, "w", "end", distance=sq_l2, batch_size=10000, seed=2)
    _mean_within(full, 8 * q2)
    _mean_within(end, 16 * q2)


def test_step_times():
    t0, t1 = ppl.step_times(2000, "end", 1e-4, torch.Generator().manual_seed(0))
    assert set(t0.tolist()) == {0.0, 1 - 1e-4} and (t1 <= 1).all()
    torch.testing.assert_close(t1 - t0, torch.full_like(t0, 1e-4))
    t0, _ = ppl.step_times(2000, "full", 1e-4, torch.Generator().manual_seed(0))
    assert 0 <= t0.min() < 0.01 and 0.99 < t0.max() <= 1 and abs(t0.mean().item() - 0.5) < 0.03


def test_percentile_filter_matches_numpy_and_drops_planted_outliers():
    v = torch.arange(1001, dtype=torch.float64)
    v[:10], v[-10:] = -1e9, 1e9
    assert ppl.filtered_mean(v) == pytest.approx(500.0)
    x = np.random.default_rng(0).lognormal(size=5003)
    lo, hi = np.percentile(x, 1, method="lower"), np.percentile(x, 99, method="higher")
    assert ppl.filtered_mean(torch.from_numpy(x)) == pytest.approx(x[(x >= lo) & (x <= hi)].mean(), rel=1e-12)
    with pytest.raises(DataError, match="not finite"):
        ppl.filtered_mean(torch.tensor([1.0, float("nan"), 2.0]))


@pytest.mark.parametrize("kwargs,message", [
    ({"eps": 0.0}, "epsilon"), ({"eps": float("nan")}, "epsilon"), ({"eps": 1.5}, "epsilon"),
    ({"space": "s"}, "unknown PPL space"), ({"sampling": "middle"}, "unknown PPL sampling"), ({"n": 1}, "at least 2"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ppl.perceptual_path_length(Analytic(), **{"n": 10, "distance": sq_l2, **kwargs})


def test_a_model_without_mapping_and_synthesis_is_refused():
    with pytest.raises(ConfigError, match="StyleGAN-family"):
        ppl.perceptual_path_length(build_model({"name": "vae", "image_size": 32, "widths": [8, 16], "latent_dim": 4}),
                                   10, distance=sq_l2)


TINY = {"name": "stylegan", "image_size": 32, "widths": [16, 16, 8, 8], "z_dim": 16, "w_dim": 16, "mapping_layers": 2}


def test_stylegan_ppl_is_zero_when_the_styles_ignore_w_so_noise_is_fixed_per_pair():
    """With every style affine's weight zeroed the image does not depend on w, so PPL is 0 only if both
    images of a pair see the same noise (the noise strengths are set non-zero); restored weights give > 0."""
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    for layer in model.synthesis.layers:
        layer.noise_strength.data.fill_(0.5)
    saved = [conv.affine.weight.data.clone() for conv in model.synthesis.style_layers()]
    for conv in model.synthesis.style_layers():
        conv.affine.weight.data.zero_()
    for space in ("w", "z"):
        assert ppl.perceptual_path_length(model, 20, space, batch_size=10) == 0.0
    for conv, w in zip(model.synthesis.style_layers(), saved):
        conv.affine.weight.data.copy_(w)
    assert ppl.perceptual_path_length(model, 20, "w", batch_size=10) > 0


def test_eval_ckpt_reports_ppl_fid_precision_recall_for_a_gan(mien_main, tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY)
    config = {"model": model.config_dict(), "data": {"size": 32, "design": "iid", "fixed": {"pitch": 0.0}, "seed": 0}}
    ckpt = checkpoint.save(model, tmp_path / "gan", config, {"steps": 0})
    code, out = mien_main("eval", "ckpt", ckpt, "--metrics", "ppl,ppl_z,fid,precision,recall", "--n", 20,
                     "--batch-size", 10, "--out", tmp_path / "m.json")
    assert code == 0, out.err
    m = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert set(m) == {"ppl_w_full", "ppl_z_full", "fid_mien", "precision", "recall"}
    assert m["ppl_w_full"] > 0 and m["ppl_z_full"] > 0 and m["fid_mien"] > 0 and 0 <= m["precision"] <= 1
    assert "ppl_w_full" in out.out
    code, out = mien_main("eval", "ckpt", ckpt, "--metrics", "ppl,mig", "--n", 20, "--out", tmp_path / "m.json")
    assert code == 2 and "needs codes" in out.err


def test_all_includes_ppl_for_gans_only():
    from mien.metrics.registry import resolve

    gan = {m.name for m in resolve("all", {"distribution", "generator"})}
    assert "ppl" in gan and "ppl_z" not in gan and "precision" not in gan and "pr" in gan
    assert "ppl" not in {m.name for m in resolve("all", {"distribution", "pairs"})}


def test_centre_crop_is_the_official_ffhq_window():
    x = torch.arange(64 * 64.0).reshape(1, 1, 64, 64)
    torch.testing.assert_close(ppl.centre_crop(x), x[:, :, 24:56, 16:48])
