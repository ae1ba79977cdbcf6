"""The diffusion core against diffusers' schedulers, analytic Gaussian cases and guidance checks."""

import dataclasses
import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from mien.diffusion import sampling
from mien.diffusion.denoisers import DenoiserConfig, UNetDenoiser
from mien.diffusion.guidance import cfg_combine, classifier_free, classifier_guided, inpaint
from mien.diffusion.hspace import HSpace
from mien.diffusion.schedule import NoiseSchedule, make_betas
from mien.errors import ConfigError


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "cosine"])
def test_schedules_match_diffusers(kind):
    ours = NoiseSchedule.make(kind, 1000)
    kw = {"beta_schedule": {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}[kind]}
    if kind == "scaled_linear":
        kw.update(beta_start=0.0015, beta_end=0.0205)
    ref = DDPMScheduler(num_train_timesteps=1000, **kw)
    assert torch.allclose(ours.abar.float(), ref.alphas_cumprod, atol=1e-6)


@pytest.mark.parametrize("variance, diffusers_variance", [("posterior", "fixed_small"), ("beta", "fixed_large")])
def test_ddpm_step_matches_diffusers(variance, diffusers_variance):
    ref = DDPMScheduler(num_train_timesteps=1000, clip_sample=False, variance_type=diffusers_variance)
    ours = NoiseSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(0)
    for t in (999, 500, 37, 1, 0):
        x, eps, z = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(3))
        expected = ref.step(eps, t, x, generator=torch.Generator().manual_seed(7))
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7)) if t > 0 else None
        got = sampling.ddpm_step(ours, eps, t, t - 1, x, noise, variance)
        assert torch.allclose(got.prev_sample, expected.prev_sample, atol=1e-5), t
        assert torch.allclose(got.pred_original_sample, expected.pred_original_sample, atol=1e-5), t


@pytest.mark.parametrize("eta, clip", [(0.0, None), (0.5, None), (1.0, None), (0.5, 0.5)])
def test_ddim_steps_match_diffusers(eta, clip):
    """Both outputs of the step, with diffusers' clip_sample (and the eps re-derived from it) for clip_x0."""
    ref = DDIMScheduler(num_train_timesteps=1000, clip_sample=clip is not None, clip_sample_range=clip or 1.0,
                        set_alpha_to_one=True, steps_offset=0)
    ref.set_timesteps(50)
    ours = NoiseSchedule.make("linear", 1000)
    grid = sampling.timesteps(1000, 50)
    assert grid == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(1)
    for i, t in enumerate(grid):
        x, eps, z = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(3))
        expected = ref.step(eps, t, x, eta=eta, variance_noise=z, use_clipped_model_output=True)
        t_prev = grid[i + 1] if i + 1 < len(grid) else -1
        got = sampling.ddim_step(ours, eps, t, t_prev, x, eta, z, clip_x0=clip)
        assert torch.allclose(got.prev_sample, expected.prev_sample, atol=1e-5), t
        assert torch.allclose(got.pred_original_sample, expected.pred_original_sample, atol=1e-5), t
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.prev_sample = x


def test_ddim_step_direction_eps_enters_only_D_t():
    """Asyrrp's step: P_t from eps, D_t = sqrt(1 - abar_prev) eps_direction (eta = 0, Haas P-V Eqs. 2-4)."""
    ref = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    ref.set_timesteps(50)
    ours = NoiseSchedule.make("linear", 1000)
    x, eps, other = (torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(s)) for s in range(3))
    expected = ref.step(eps, 500, x)
    got = sampling.ddim_step(ours, eps, 500, 480, x, eps_direction=other)
    a_prev = ref.alphas_cumprod[480]
    assert torch.allclose(got.pred_original_sample, expected.pred_original_sample, atol=1e-5)
    assert torch.allclose(got.prev_sample, a_prev.sqrt() * expected.pred_original_sample + (1 - a_prev).sqrt() * other,
                          atol=1e-5)


def reference_sample(denoise, schedule, x, steps, eta=0.0, method="ddim", generator=None, hook=None, harmonise=1,
                     clip_x0=None):
    """The sampler's loop as it was before the tidy (e2af29c, without its unused options): the
    regression reference for the order of the noise draws, the hook and the resampling."""
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        for r in range(max(1, harmonise)):
            eps, x0 = schedule.split(denoise(x, t), x, t)
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) if (eta > 0 or method == "ddpm") else None
            if method == "ddim":
                x_prev = sampling.ddim_step(schedule, eps, t, t_prev, x, eta, noise, clip_x0=clip_x0).prev_sample
            else:
                x_prev = sampling.ddpm_step(schedule, eps, t, t_prev, x, noise, clip_x0=clip_x0).prev_sample
            if hook is not None:
                x_prev = hook(x_prev, x_t=x, t=t, t_prev=t_prev, eps=eps, x0=x0)
            if r + 1 < harmonise and t_prev >= 0:
                x = sampling.renoise(schedule, x_prev, t_prev, t, torch.randn(x.shape, generator=generator,
                                                                              dtype=x.dtype))
        x = x_prev
    return x


@pytest.mark.parametrize("method, eta, harmonise, clip", [("ddim", 0.0, 1, None), ("ddim", 0.7, 3, 1.0),
                                                          ("ddpm", 0.0, 2, None), ("ddpm", 0.0, 1, 0.5)])
def test_sample_is_bit_identical_to_the_loop_of_steps(method, eta, harmonise, clip):
    sched = NoiseSchedule.make("linear", 1000)
    denoise = lambda x, t: torch.sin(x * (1 + t / 1000))  # noqa: E731
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    known, mask = torch.randn(8, 2, generator=torch.Generator().manual_seed(1)), torch.tensor([1.0, 0.0])
    outs = []
    for run in (sampling.sample, reference_sample):
        g = torch.Generator().manual_seed(2)
        outs.append(run(denoise, sched, x_T, sampling.timesteps(1000, 8), eta=eta, method=method, generator=g,
                        hook=inpaint(known, mask, sched, g), harmonise=harmonise, clip_x0=clip))
    assert torch.equal(*outs)


def gaussian_eps(schedule, mean, cov):
    """The optimal eps model for data N(mean, cov): E[eps | x_t] = sqrt(1-a) S_t^-1 (x_t - sqrt(a) mean)."""
    d = len(mean)

    def eps(x, t):
        a = float(schedule.alpha_bar(t))
        s = a * cov + (1 - a) * torch.eye(d, dtype=x.dtype)
        return math.sqrt(1 - a) * torch.linalg.solve(s, (x - math.sqrt(a) * mean).T).T

    return eps


def test_ddim_inversion_then_sampling_returns_x0():
    sched = NoiseSchedule(make_betas("linear", 1000).double())
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    point = gaussian_eps(sched, mean, torch.zeros(2, 2, dtype=torch.float64) + 1e-12 * torch.eye(2, dtype=torch.float64))
    x0 = mean.expand(4, 2).clone()
    grid = sampling.timesteps(1000, 50)
    back = sampling.sample(point, sched, sampling.ddim_invert(point, sched, x0, grid), grid)
    assert torch.allclose(back, x0, atol=1e-5)  # exact: the data is a point mass
    cov = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    gauss = gaussian_eps(sched, mean, cov)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + mean
    errors = []
    for steps in (25, 100, 400):
        grid = sampling.timesteps(1000, steps, spacing="linspace")
        back = sampling.sample(gauss, sched, sampling.ddim_invert(gauss, sched, x0, grid), grid)
        errors.append((back - x0).abs().max().item())
    assert errors[2] < errors[1] < errors[0] and errors[0] > 8 * errors[2] and errors[2] < 0.05  # first order in 1/steps


def test_ddpm_samples_have_the_data_mean_and_covariance():
    sched = NoiseSchedule(make_betas("linear", 1000).double())
    mean = torch.tensor([1.0, -0.5], dtype=torch.float64)
    cov = torch.tensor([[0.6, 0.25], [0.25, 0.3]], dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(6000, 2, generator=g, dtype=torch.float64)
    x = sampling.sample(gaussian_eps(sched, mean, cov), sched, x_T, list(range(999, -1, -1)), method="ddpm", generator=g)
    assert torch.allclose(x.mean(0), mean, atol=0.04)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.04)


def test_cfg_reduces_to_unconditional_and_conditional():
    model = lambda x, t, y: x * (1 + y[:, None].float())  # noqa: E731
    x = torch.randn(4, 3)
    y, null = torch.tensor([1, 2, 3, 4]), torch.zeros(4, dtype=torch.long)
    assert torch.equal(classifier_free(model, y, null, 0.0)(x, 5), model(x, 5, null))
    assert torch.equal(classifier_free(model, y, null, 1.0)(x, 5), model(x, 5, y))
    both = classifier_free(model, y, null, 3.0)(x, 5)
    assert torch.allclose(both, cfg_combine(model(x, 5, null), model(x, 5, y), 3.0))


def mixture_models(sched, centres, std):
    """Unconditional eps and the exact noisy-posterior classifier of an equal two-Gaussian mixture."""

    def log_components(x, t):
        a = float(sched.alpha_bar(t))
        var = a * std ** 2 + 1 - a
        return torch.stack([-((x - math.sqrt(a) * c) ** 2).sum(-1) / (2 * var) for c in centres], -1), a, var

    def eps(x, t):
        logc, a, var = log_components(x, t)
        w = torch.softmax(logc, -1)
        means = torch.stack([math.sqrt(a) * c.expand_as(x) for c in centres], 1)
        return math.sqrt(1 - a) * (x - (w[..., None] * means).sum(1)) / var

    return eps, (lambda x, t: log_components(x, t)[0])


def test_classifier_guidance_moves_mixture_samples_to_the_requested_class():
    sched = NoiseSchedule.make("linear", 1000)
    centres = [torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 0.0])]
    eps, classifier = mixture_models(sched, centres, 0.5)
    grid = sampling.timesteps(1000, 50)
    x_T = torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    plain = sampling.sample(eps, sched, x_T, grid)
    assert 0.3 < (plain[:, 0] > 0).float().mean() < 0.7
    for cls, sign in ((1, 1), (0, -1)):
        y = torch.full((400,), cls)
        guided = sampling.sample(classifier_guided(eps, classifier, y, 3.0, sched), sched, x_T, grid)
        assert (sign * guided[:, 0] > 0).float().mean() > 0.95


def tiny_unet(classes=0):
    torch.manual_seed(0)
    return UNetDenoiser(DenoiserConfig(preset="tiny", channels=[8, 16], norm_groups=4), 16, 3, classes).eval()


def test_inpainting_keeps_the_known_region():
    sched = NoiseSchedule.make("linear", 1000)
    net = tiny_unet()
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.zeros(2, 3, 16, 16)
    mask[..., :8] = 1
    g = torch.Generator().manual_seed(0)
    out = sampling.sample(lambda x, t: net(x, t), sched, torch.randn(x0.shape, generator=g), sampling.timesteps(1000, 10),
                          hook=inpaint(x0, mask, sched, g), harmonise=2, eta=1.0, generator=g)
    assert torch.equal(out[..., :8], x0[..., :8])
    assert not torch.allclose(out[..., 8:], x0[..., 8:])


def test_hspace_offset_zero_changes_nothing_and_nonzero_changes_output():
    sched = NoiseSchedule.make("linear", 1000)
    net = tiny_unet()
    h = HSpace(net)
    grid = sampling.timesteps(1000, 5)
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with h.capture() as captured:
        base = sampling.sample(h.denoiser(net), sched, x_T, grid)
    assert sorted(captured) == sorted(grid) and captured[grid[0]].shape[0] == 2
    with h.inject({t: torch.zeros_like(v) for t, v in captured.items()}):
        same = sampling.sample(h.denoiser(net), sched, x_T, grid)
    with h.inject({t: 2 * torch.randn_like(v) for t, v in captured.items()}):
        edited = sampling.sample(h.denoiser(net), sched, x_T, grid)
    assert torch.equal(same, base)
    assert (edited - base).abs().max() > 1e-3
    h.remove()


def test_hspace_asyrrp_edits_only_the_predicted_x0():
    """Asyrrp (Haas P-V SM B): each step takes P_t from the edited pass and D_t from the plain one,
    which differs from both the unedited sampler and the edit injected into both terms."""
    sched = NoiseSchedule.make("linear", 1000)
    net = tiny_unet()
    h = HSpace(net)
    grid = sampling.timesteps(1000, 5)
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with h.capture() as captured:
        base = sampling.sample(h.denoiser(net), sched, x_T, grid)
    offsets = {t: 2 * torch.randn_like(v) for t, v in captured.items()}
    edited, plain = h.asyrrp(net, offsets)
    asyrrp = sampling.sample(edited, sched, x_T, grid, direction=plain)
    x, denoise = x_T, h.denoiser(net)
    with torch.no_grad():
        for t, t_prev in zip(grid, [*grid[1:], -1]):
            with h.inject(offsets):
                eps_edited = denoise(x, t)
            x = sampling.ddim_step(sched, eps_edited, t, t_prev, x, eps_direction=denoise(x, t)).prev_sample
    assert torch.allclose(asyrrp, x, atol=1e-6)
    with h.inject(offsets):
        both = sampling.sample(h.denoiser(net), sched, x_T, grid)
    assert (asyrrp - base).abs().max() > 1e-3 and (asyrrp - both).abs().max() > 1e-3
    unedited, plain = h.asyrrp(net, {t: torch.zeros_like(v) for t, v in captured.items()})
    assert torch.equal(sampling.sample(unedited, sched, x_T, grid, direction=plain), base)
    with pytest.raises(ConfigError, match="ddim"):
        sampling.sample(edited, sched, x_T, grid, method="ddpm", direction=plain)
    h.remove()


def test_timestep_grids_and_errors():
    assert sampling.timesteps(1000, 4, t0=499) == [499, 333, 166, 0]
    assert sampling.timesteps(1000, 5, spacing="linspace") == [999, 749, 500, 250, 0]
    with pytest.raises(ConfigError):
        sampling.timesteps(1000, 5, t0=1000)
    with pytest.raises(ConfigError):
        make_betas("quadratic", 10)


def test_guidance_with_a_classifier_trained_on_noisy_inputs(tmp_path):
    """The noisy classifier trained by the engine on two Gaussian blobs steers samples of their
    mixture to the requested one."""
    import mien
    from mien.train import fit, run_config

    sched = NoiseSchedule.make("linear", 1000)
    centres = [torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 0.0])]
    eps, _ = mixture_models(sched, centres, 0.5)
    g = torch.Generator().manual_seed(0)
    y_all = torch.randint(2, (128 * 300,), generator=g)
    x_all = torch.stack(centres)[y_all] + 0.5 * torch.randn(len(y_all), 2, generator=g)

    class Blobs(torch.utils.data.Dataset):
        def __len__(self):
            return len(y_all)

        def batch(self, idx):
            return {"x": x_all[idx], "label": y_all[idx]}

    cfg = run_config({"model": {"name": "noisy_classifier", "input": "x", "hidden": 32},
                      "data": {"batch_size": 128}, "train": {"max_steps": 300, "lr": 1e-3, "save_every": 0}})
    clf = mien.load(fit(cfg, tmp_path / "clf", progress=False, dataset=Blobs()))
    assert clf.config.in_shape == [2]
    x_T = torch.randn(300, 2, generator=torch.Generator().manual_seed(1))
    y = torch.ones(300, dtype=torch.long)
    guided = sampling.sample(classifier_guided(eps, clf, y, 3.0, sched), sched, x_T, sampling.timesteps(1000, 50))
    assert (guided[:, 0] > 0).float().mean() > 0.9
