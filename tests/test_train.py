"""The training engine: checkpoints, load, resume, NaN guard, alternating groups, EMA, errors."""

from dataclasses import dataclass

import lightning as L
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import mien
from mien.errors import ConfigError, DataError
from mien.models.base import GenerativeModel, ImageConfig, ModelConfig, Phase, build_model, register
from mien.train import fit, run_config
from mien.train.data import ResumableLoader, StepBatchSampler
from mien.train.module import NonFiniteLoss, TrainingModule


def tiny(model=None, steps=12, **train):
    return run_config({
        "model": {"name": "vae", "widths": [8, 16, 16], "latent_dim": 4, **(model or {})},
        "data": {"size": 32, "n": 256, "batch_size": 32, "fixed": {"pitch": 0, "roll": 0}},
        "train": {"max_steps": steps, "save_every": 5, "lr": 1e-3, **train}})


def weights(path):
    return load_file(str(path / "model.safetensors"))


def test_fit_writes_a_loadable_checkpoint(tmp_path):
    out = fit(tiny(), tmp_path / "run", progress=False)
    for name in ("model.safetensors", "config.yaml", "meta.json", "metrics.csv", "state/last.ckpt"):
        assert (out / name).is_file(), name
    model = mien.load(out)
    w = weights(out)
    assert all(torch.equal(v, w[k]) for k, v in model.state_dict().items())
    meta = mien.models.checkpoint.read_meta(out)
    assert meta["steps"] == 12 and meta["model"] == "vae" and "loss" in meta["metrics"]
    x = torch.zeros(2, 3, 32, 32)
    assert model.reconstruct(x).shape == x.shape


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    fit(tiny(steps=12), tmp_path / "full", progress=False)
    fit(tiny(steps=7), tmp_path / "cut", progress=False)  # last saved state: step 5, mid-epoch
    fit(tiny(steps=12), tmp_path / "cut", resume=True, progress=False)
    a, b = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="--resume"):
        fit(tiny(steps=12), tmp_path / "full", progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        fit(tiny(steps=12), tmp_path / "none", resume=True, progress=False)


@dataclass
class ExplodingConfig(ImageConfig):
    explode_at: int = 7
    poison_at: int = -1  # the loss stays finite but its gradient is NaN (the update breaks the weights)
    interrupt_at: int = -1


@register("exploding_test", ExplodingConfig)
class Exploding(GenerativeModel):
    """A linear autoencoder whose loss turns NaN at a chosen step."""

    def __init__(self, config):
        super().__init__(config)
        self.lin = nn.Linear(3 * config.image_size ** 2, 3 * config.image_size ** 2)

    def loss(self, batch, step=0):
        x = batch["image"].flatten(1)
        loss = ((self.lin(x) - x) ** 2).mean()
        if step >= self.config.explode_at:
            loss = loss * float("nan")
        if step == self.config.poison_at:
            w = self.lin.weight[0, 0]
            loss = loss + (w - w.detach()).abs().sqrt()  # value 0, gradient inf * 0 = NaN
        if step == self.config.interrupt_at:
            raise KeyboardInterrupt
        return {"loss": loss}


def exploding(steps=20, save_every=5, lr=1e-3, **model):
    cfg = tiny(steps=steps, save_every=save_every, lr=lr)
    cfg.model = {"name": "exploding_test", "image_size": 32, **model}
    return cfg


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = tiny(steps=20)
    cfg.model = {"name": "exploding_test", "image_size": 32}
    with pytest.raises(NonFiniteLoss, match=r"step 7.*last good checkpoint \(step 5\).*--resume"):
        fit(cfg, tmp_path / "run", progress=False)
    meta = mien.models.checkpoint.read_meta(tmp_path / "run")
    assert meta["steps"] == 5
    w = weights(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in w.values())


def test_factorvae_phases_step_each_group_on_its_own_loss(tmp_path):
    cfg = tiny({"name": "factorvae"}, steps=6)
    out = fit(cfg, tmp_path / "run", progress=False)
    after = mien.load(out)
    L.seed_everything(cfg.train.seed, verbose=False)  # fit builds the model right after this seeding
    init = build_model({**cfg.model, "image_size": 32})
    groups = after.param_groups()
    assert set(groups) == {"model", "disc"}
    bound = 6 * cfg.train.lr * 3.2  # Adam moves a weight by at most about 3.2 lr per step here
    for name in groups:
        moved = max((p - q).abs().max().item() for p, q in zip(groups[name], init.param_groups()[name]))
        assert 0 < moved <= bound, (name, moved)


def test_ema_update_formula():
    cfg = tiny(ema_decay=0.9)
    module = TrainingModule(build_model(cfg.model), cfg.train)
    p = next(module.model.parameters())
    e = next(module.ema.parameters())
    with torch.no_grad():
        p.add_(1.0)
    expected = 0.9 * e.detach().clone() + 0.1 * p.detach()
    module._update_ema(0.9)
    assert torch.allclose(e, expected)
    assert module.inference_model() is module.ema


def test_global_batch_does_not_depend_on_process_count():
    one = list(StepBatchSampler(64, 8, seed=3))
    two = [list(StepBatchSampler(64, 4, seed=3, rank=r, world=2)) for r in range(2)]
    assert len(one) == 8 and len(two[0]) == 8
    merged = sorted(two[0][0] + two[1][0])
    whole = list(StepBatchSampler(64, 8, seed=3))  # same permutation, batch 8 = two slots of 4
    assert merged == sorted(whole[0])


class Indices(torch.utils.data.Dataset):
    """A data set that makes whole batches: each is its index list, as a tensor."""

    def __len__(self):
        return 24

    def batch(self, indices):
        return torch.tensor(indices)


def test_loader_hands_whole_batches_reshuffles_each_epoch_and_resumes_at_any_point():
    def batches(loader, n):
        out = []
        while len(out) < n:
            for b in loader:
                out.append(b.tolist())
                if len(out) == n:
                    break
        return out, loader.state_dict()

    run, _ = batches(ResumableLoader(Indices(), StepBatchSampler(24, 6, seed=1)), 12)  # three epochs
    epochs = [run[i:i + 4] for i in range(0, 12, 4)]
    assert all(sorted(sum(e, [])) == list(range(24)) for e in epochs) and epochs[0] != epochs[1] != epochs[2]
    for cut in range(1, 12):  # stopped after `cut` batches (an epoch boundary included), then resumed
        _, state = batches(ResumableLoader(Indices(), StepBatchSampler(24, 6, seed=1)), cut)
        resumed = ResumableLoader(Indices(), StepBatchSampler(24, 6, seed=1))
        resumed.load_state_dict(state)
        assert batches(resumed, 12 - cut)[0] == run[cut:], cut


def test_bad_configs_and_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key model.widthz"):
        build_model({"name": "vae", "widthz": [8]})
    with pytest.raises(ConfigError, match="unknown key train.max_step for"):
        run_config({"model": {"name": "vae"}, "train": {"max_step": 3}})
    with pytest.raises(ConfigError, match="train.lr must be a finite number > 0, got 'fast'"):
        run_config({"model": {"name": "vae"}, "train": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="unknown model"):
        build_model({"name": "gan9000"})
    out = fit(tiny(steps=2), tmp_path / "run", progress=False)
    (out / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(DataError, match="corrupt"):
        mien.load(out)
    (out / "config.yaml").unlink()
    with pytest.raises(DataError, match="missing config.yaml"):
        mien.load(out)
    with pytest.raises(DataError, match="does not exist"):
        mien.load(tmp_path / "nowhere")


# --- phases: a two-player model on 2-D points ------------------------------------------------------
@dataclass
class ToyGANConfig(ModelConfig):
    hidden: int = 16
    r1_gamma: float = 1.0
    r1_every: int = 4


@register("toygan_test", ToyGANConfig)
class ToyGAN(GenerativeModel):
    """G: noise -> points; D: points -> logit. Phases: D (every step), lazy R1 on D (every
    ``r1_every``), G (every step), as StyleGAN2 schedules them."""

    def __init__(self, config):
        super().__init__(config)
        h = config.hidden
        self.generator = nn.Sequential(nn.Linear(2, h), nn.ReLU(), nn.Linear(h, 2))
        self.discriminator = nn.Sequential(nn.Linear(2, h), nn.LeakyReLU(0.2), nn.Linear(h, 1))

    def param_groups(self):
        return {"G": list(self.generator.parameters()), "D": list(self.discriminator.parameters())}

    def phases(self):
        return [Phase("D", self.d_loss), Phase("D", self.r1, every=self.config.r1_every, lazy=True, name="r1"),
                Phase("G", self.g_loss)]

    def ema_modules(self):
        return ["generator"]

    def fake(self, n):
        return self.generator(torch.randn(n, 2))

    def d_loss(self, batch, step):
        real, fake = batch["points"], self.fake(len(batch["points"])).detach()
        loss = nn.functional.softplus(-self.discriminator(real)).mean() + nn.functional.softplus(self.discriminator(fake)).mean()
        return {"loss": loss}

    def r1(self, batch, step):
        real = batch["points"].detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.discriminator(real).sum(), real, create_graph=True)
        return {"loss": 0.5 * self.config.r1_gamma * grad.pow(2).sum(1).mean(), "r1_step": torch.tensor(float(step))}

    def g_loss(self, batch, step):
        return {"loss": nn.functional.softplus(-self.discriminator(self.fake(len(batch["points"])))).mean()}


class Points(torch.utils.data.Dataset):
    """Points on a ring, rendered a whole batch at a time."""

    def __len__(self):
        return 96

    def batch(self, indices):
        a = torch.tensor(indices, dtype=torch.float32) * 0.7
        return {"points": torch.stack([a.cos(), a.sin()], 1)}


def toy(steps, **train):
    return run_config({"model": {"name": "toygan_test"}, "data": {"batch_size": 16},
                       "train": {"max_steps": steps, "save_every": 3, "lr": 1e-2, "log_every": 1, **train}})


@pytest.mark.parametrize("cut", [5, 6, 8])  # 5, 6: the next step runs D and G only; 8: R1 runs next
def test_phases_resume_bit_identically(tmp_path, cut):
    fit(toy(12, ema_decay=0.9), tmp_path / "full", progress=False, dataset=Points())
    fit(toy(cut, ema_decay=0.9), tmp_path / "cut", progress=False, dataset=Points())
    fit(toy(12, ema_decay=0.9), tmp_path / "cut", resume=True, progress=False, dataset=Points())
    a, b = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert mien.models.checkpoint.read_meta(tmp_path / "cut")["steps"] == 12


def test_phases_run_on_their_periods_and_step_only_their_group(tmp_path):
    import csv

    out = fit(toy(9), tmp_path / "run", progress=False, dataset=Points())
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    r1_steps = sorted({int(float(r["r1_step"])) for r in rows if r.get("r1_step")})
    assert r1_steps == [0, 4, 8]
    assert all(r.get("loss_D") and r.get("loss_G") for r in rows if r.get("loss_D"))


def test_phase_backward_reaches_its_group_only():
    cfg = toy(1)
    module = TrainingModule(build_model(cfg.model), cfg.train)
    batch = Points().batch(list(range(8)))
    terms = module.model.g_loss(batch, 0)
    module.model.zero_grad(set_to_none=True)
    terms["loss"].backward(inputs=module.group_params["G"])
    assert all(p.grad is None for p in module.group_params["D"])
    assert all(p.grad is not None for p in module.group_params["G"])


def test_per_group_optimisers_and_lazy_regularisation_correction():
    """StyleGAN2 App. B: a group with a lazy phase of period k runs Adam at lr c and betas beta^c,
    c = k / (k + 1); the other group keeps its own settings."""
    cfg = toy(1, optim={"D": {"lr": 2e-3, "betas": [0.0, 0.99]}, "G": {"betas": [0.5, 0.9]}})
    module = TrainingModule(build_model(cfg.model), cfg.train)
    opts = dict(zip(module.groups, module.configure_optimizers()))
    c = 4 / 5
    assert opts["D"].defaults["lr"] == pytest.approx(2e-3 * c)
    assert opts["D"].defaults["betas"] == pytest.approx((0.0, 0.99 ** c))
    assert opts["G"].defaults["lr"] == pytest.approx(1e-2) and opts["G"].defaults["betas"] == pytest.approx((0.5, 0.9))
    with pytest.raises(ConfigError, match="'disc' is not one of"):
        TrainingModule(build_model(cfg.model), toy(1, optim={"disc": {"lr": 1e-3}}).train)
    with pytest.raises(ConfigError, match="betas"):
        toy(1, optim={"D": {"betas": [0.9]}})
    with pytest.raises(ConfigError, match="unknown key train.optim.D.momentum"):
        toy(1, optim={"D": {"momentum": 0.9}})


def test_ema_averages_only_the_ema_modules():
    cfg = toy(1, ema_decay=0.5)
    module = TrainingModule(build_model(cfg.model), cfg.train)
    before = {n: p.detach().clone() for n, p in module.ema.named_parameters()}
    with torch.no_grad():
        for p in module.model.parameters():
            p.add_(1.0)
    module._update_ema(0.5)
    for n, p in module.ema.named_parameters():
        want = before[n] + (0.5 if n.startswith("generator.") else 1.0)
        assert torch.allclose(p, want), n


class RecordedPoints(Points):
    def __init__(self):
        self.seen = []

    def batch(self, indices):
        self.seen.append(sorted(indices))
        return super().batch(indices)


def test_engine_reshuffles_at_each_epoch(tmp_path):
    """96 points in batches of 16: six batches an epoch; epoch 1 is a new permutation of all points
    (before, Lightning never resumed the loader past its last batch and every epoch replayed epoch 0)."""
    data = RecordedPoints()
    fit(toy(12), tmp_path / "run", progress=False, dataset=data)
    epochs = [data.seen[:6], data.seen[6:12]]
    assert all(sorted(sum(e, [])) == list(range(96)) for e in epochs)
    assert epochs[0] != epochs[1]


def test_nan_guard_never_keeps_weights_broken_by_an_update(tmp_path):
    """Issue 20 item 4: the loss of step 9 is finite, its update makes the weights NaN; the save
    after step 9 must not keep them (before, meta.json said 10 steps and the weights were NaN)."""
    with pytest.raises(NonFiniteLoss, match="weight lin.weight became non-finite.*step 5"):
        fit(exploding(explode_at=100, poison_at=9), tmp_path / "run", progress=False)
    assert mien.models.checkpoint.read_meta(tmp_path / "run")["steps"] == 5
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "run").values())


def test_nan_guard_checks_the_loss_of_kept_weights_and_says_when_nothing_was_saved(tmp_path):
    """lr 1e30: step 0's loss is finite, its update gives finite but huge weights whose loss is inf;
    they are not kept, and the message does not claim a checkpoint that was never written."""
    with pytest.raises(NonFiniteLoss, match="after step 0 give a non-finite loss.*no checkpoint was saved"):
        fit(exploding(steps=3, save_every=1, lr=1e30, explode_at=100), tmp_path / "a", progress=False)
    assert not (tmp_path / "a" / "model.safetensors").exists()
    with pytest.raises(NonFiniteLoss, match="step 3.*no checkpoint was saved before it"):
        fit(exploding(explode_at=3), tmp_path / "b", progress=False)
    assert not (tmp_path / "b" / "model.safetensors").exists()


def test_resume_applies_the_new_optimiser_settings(tmp_path):
    """The advice "lower train.lr and resume" works: the resumed optimiser uses the new lr, betas
    and weight decay (the state file holds the old ones)."""
    from mien.train.state import read_state

    fit(tiny(steps=5), tmp_path / "run", progress=False)
    fit(tiny(steps=7, lr=5e-4, betas=[0.5, 0.9], weight_decay=0.01), tmp_path / "run", resume=True, progress=False)
    [group] = read_state(tmp_path / "run" / "state" / "last.ckpt")["optimizer_states"][0]["param_groups"]
    assert group["lr"] == 5e-4 and tuple(group["betas"]) == (0.5, 0.9) and group["weight_decay"] == 0.01


class Planted:
    """An object whose unpickling creates a file: what a hostile state file would run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_resume_never_unpickles_code_and_reports_bad_state_in_one_line(tmp_path, monkeypatch):
    """Issue 20 item 2: with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 a planted pickle ran on resume."""
    out = fit(tiny(steps=2), tmp_path / "run", progress=False)
    state = out / "state" / "last.ckpt"
    good = state.read_bytes()
    marker = tmp_path / "pwned"
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    torch.save({"mien": {"step": 0}, "payload": Planted(marker)}, state)
    with pytest.raises(DataError, match="could run code"):
        fit(tiny(steps=4), out, resume=True, progress=False)
    assert not marker.exists()
    for bad, says in [(good[: len(good) // 2], "corrupt or truncated"), (b"\x00garbage" * 10, "corrupt"),
                      (b"", "corrupt")]:
        state.write_bytes(bad)
        with pytest.raises(DataError, match=says):
            fit(tiny(steps=4), out, resume=True, progress=False)


def test_full_disk_while_saving_keeps_the_previous_state_and_resume_works(tmp_path, monkeypatch):
    """Fault injection: the second state save fills the disk half-way. The step-5 state survives
    whole under its name, no temp file is left, and resuming finishes the run."""
    import errno

    from mien.errors import OutputError
    from mien.train import state as state_module
    from mien.train.state import read_state

    saves, real_save = [], torch.save

    def failing_save(obj, f):
        saves.append(1)
        if len(saves) == 2:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(state_module.torch, "save", failing_save)
    with pytest.raises(OutputError, match="disk full"):
        fit(tiny(steps=12), tmp_path / "run", progress=False)
    monkeypatch.setattr(state_module.torch, "save", real_save)
    folder = tmp_path / "run" / "state"
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]
    assert read_state(folder / "last.ckpt")["mien"]["step"] == 5
    fit(tiny(steps=12), tmp_path / "run", resume=True, progress=False)
    assert mien.models.checkpoint.read_meta(tmp_path / "run")["steps"] == 12


def test_resume_on_another_process_count_says_what_to_do(tmp_path):
    """A 2-process run resumed on 1 process trained nothing and printed "checkpoint written"."""
    from mien.train.state import read_state

    out = fit(tiny(steps=5), tmp_path / "run", progress=False)
    path = out / "state" / "last.ckpt"
    state = read_state(path)
    state["mien"]["world_size"] = 2
    torch.save(state, path)
    with pytest.raises(ConfigError, match="trained on 2 process.*resume with the same --devices"):
        fit(tiny(steps=8), out, resume=True, progress=False)


def test_fit_checks_that_it_reached_max_steps(tmp_path, monkeypatch):
    from mien.train import run
    from mien.train.run import TrainingError

    monkeypatch.setattr(run, "_epochs", lambda cfg, n: 1)  # 8 batches an epoch, 12 steps asked
    with pytest.raises(TrainingError, match="stopped at step 8 of train.max_steps=12"):
        fit(tiny(steps=12), tmp_path / "run", progress=False)


def test_ctrl_c_during_training_is_a_keyboard_interrupt_and_keeps_the_checkpoint(tmp_path):
    """Lightning turns Ctrl-C into sys.exit(1); fit raises KeyboardInterrupt again (the CLI says so, exit 130)."""
    import signal

    with pytest.raises(KeyboardInterrupt):
        fit(exploding(explode_at=100, interrupt_at=7), tmp_path / "run", progress=False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert mien.models.checkpoint.read_meta(tmp_path / "run")["steps"] == 5
