"""System Z1 (Zou ch. 3): backbones, training through the engine, plug-and-play sampling (Alg. 1-4),
the CLI and its errors."""

import sys

import numpy as np
import pytest
import torch

import mien
from mien.cli import main
from mien.data.world.sequences import WorldSequenceDataset, pad_sequences
from mien.config import preset_path
from mien.errors import ConfigError, DataError
from mien.control.expr4d import fill, fill_mask, geometry_adaptive, text_control
from mien.diffusion.plug_and_play import refine
from mien.models.expr4d import label_control, mean_imputation, unconditional
from mien.models.expr4d.backbones import make_network
from mien.models import build_model
from mien.train import fit, load_run_config

SIZE = dict(d_model=16, layers=2, heads=2, ff=32, dropout=0.0, unet_widths=[16, 32])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny preset through `fit`, with a short schedule so that sampling is quick."""
    out = tmp_path_factory.mktemp("expr4d")
    cfg = load_run_config(preset_path("expr4d", "tiny"), ["train.max_steps=60", "model.timesteps=12",
                                                              "model.beta_start=0.02", "model.beta_end=0.9"])
    fit(cfg, out, progress=False)
    return out


def real(n=4, frames=40, seed=7):
    ds = WorldSequenceDataset(n, seed, frames)
    return torch.stack([ds[i]["sequence"] for i in range(n)])


@pytest.mark.parametrize("kind", ["bit", "causal", "unet"])
def test_backbones_any_length_and_attention_direction(kind):
    torch.manual_seed(0)
    net = make_network(kind, 6, 6, **SIZE).eval()
    head = make_network(kind, 6, 5, pooled=True, **SIZE).eval()
    for frames in (7, 12):
        x, t = torch.randn(2, frames, 6), torch.tensor([3, -1])
        assert net(x, t).shape == (2, frames, 6) and head(x, t).shape == (2, 5)
    x = torch.randn(1, 10, 6)
    y = x.clone()
    y[:, 7:] += 1.0  # change the last frames only
    early = (net(x, torch.tensor([2]))[:, :5] - net(y, torch.tensor([2]))[:, :5]).abs().max()
    if kind == "causal":
        assert early < 1e-5  # the masked transformer cannot look ahead
    else:
        assert early > 1e-4  # BiT and the U-Net see both directions


def test_padding_mask_hides_padded_frames():
    torch.manual_seed(0)
    head = make_network("bit", 6, 5, pooled=True, **SIZE).eval()
    x = torch.randn(1, 10, 6)
    mask = torch.arange(10)[None] < 7
    y = x.clone()
    y[:, 7:] = 100.0
    assert torch.allclose(head(x, torch.tensor([0]), mask), head(y, torch.tensor([0]), mask), atol=1e-5)
    assert torch.allclose(head(x[:, :7], torch.tensor([0])), head(x, torch.tensor([0]), mask), atol=1e-5)


def test_training_through_the_engine_lowers_every_loss(trained):
    import csv

    rows = list(csv.DictReader((trained / "metrics.csv").open()))
    first = [r for r in rows if r.get("loss_classifier")][0]
    last = [r for r in rows if r.get("loss_classifier")][-1]
    for key in ("loss", "loss_classifier", "loss_text"):
        assert float(last[key]) < float(first[key]), key
    model = mien.load(trained)
    assert model.trained_frames.tolist() == [35, 45] and float(model.coord_scale) > 0


def test_refine_is_adagrad_on_the_fluency_term_formula():
    """With no score, one Adagrad step of lr moves each coordinate by lr toward mu (g/|g| = sign)."""

    class Stub:
        schedule = __import__("mien.diffusion.schedule", fromlist=["NoiseSchedule"]).NoiseSchedule.make("linear", 10)
        config = type("C", (), {"guidance_lambda": 0.01, "guidance_steps": 1, "guidance_lr": 0.1, "clip_x0": None})()

    x_t, eps, x_prev = torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    from mien.diffusion.sampling import ddpm_step

    mu = ddpm_step(Stub.schedule, eps, 5, 4, x_t, torch.zeros_like(x_t), variance="beta").prev_sample
    out = refine(Stub, lambda x, t: torch.zeros(len(x)))(x_prev, x_t=x_t, t=5, t_prev=4, eps=eps)
    assert torch.allclose(out, x_prev - 0.1 * torch.sign(x_prev - mu), atol=1e-6)


def test_filling_keeps_known_frames_and_length(trained):
    model = mien.load(trained)
    seq = real(2)
    for mode, k in (("begin", 12), ("middle", 6), ("end", 20)):
        mask = fill_mask(40, mode, k)
        assert int(mask.sum()) == (2 * k if mode == "middle" else k)
        out = fill(model, seq, mask, generator=torch.Generator().manual_seed(0))
        assert out.shape == seq.shape
        assert torch.allclose(out[:, mask], seq[:, mask], atol=1e-5)
        assert (out[:, ~mask] - seq[:, ~mask]).abs().max() > 1e-3  # the rest is generated


def test_geometry_adaptive_anchors_the_neutral_frame(trained):
    model = mien.load(trained)
    neutral = real(1)[0, 0]
    for direction, index in (("N2E", 0), ("E2N", -1)):
        out = geometry_adaptive(model, neutral, "happy", direction, frames=37, n=2, passes=2,
                                generator=torch.Generator().manual_seed(1))
        assert out.shape == (2, 37, 68, 3)
        assert torch.allclose(out[:, index], neutral.expand(2, -1, -1), atol=1e-5)


def test_label_guidance_raises_classifier_accuracy(trained):
    """Alg. 1 with the tiny type-I classifier: its accuracy on the generated (clean) sequences
    beats unguided sampling from the same noise."""
    model = mien.load(trained)
    labels = ["happy", "surprise", "mouth_open", "sad"]

    def accuracy(guided: bool) -> float:
        hits = 0
        for i, name in enumerate(labels):
            g = torch.Generator().manual_seed(i)
            seqs = label_control(model, name, 6, 40, generator=g, lr=0.2) if guided else unconditional(model, 6, 40, g)
            logits = model.class_logits(model.normalise(seqs), -1)
            hits += int((logits.argmax(1) == model.label_index(name)).sum())
        return hits / (6 * len(labels))

    assert accuracy(True) > accuracy(False) + 0.2


def test_text_control_raises_cosine_and_rejects_unknown_words(trained):
    model = mien.load(trained)
    prompt = "from the neutral face to happy"
    e = model.embed_text([prompt])

    def cosine(seqs):
        return (model.sequence_embedding(model.normalise(seqs), -1) * e).sum(-1).mean()

    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert cosine(text_control(model, prompt, 4, 40, generator=g(), lr=0.2)) > cosine(unconditional(model, 4, 40, g()))
    with pytest.raises(ConfigError, match="'joyful'"):
        text_control(model, "from the neutral face to joyful", 1, 40)


def test_bad_inputs_give_clear_errors(trained):
    model = mien.load(trained)
    with pytest.raises(ConfigError, match="unknown expression label 'grumpy'"):
        label_control(model, "grumpy", 1, 40)
    with pytest.raises(ConfigError, match="outside the trained range 35..45"):
        label_control(model, "happy", 1, 80)
    with pytest.raises(DataError, match="70 landmarks x 3|frames x 68 landmarks"):
        fill(model, torch.zeros(1, 40, 70, 3), fill_mask(40, "end", 10))
    bad = real(1)
    bad[0, 3] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        fill(model, bad, fill_mask(40, "end", 10))
    with pytest.raises(DataError, match="neutral face"):
        geometry_adaptive(model, torch.zeros(60, 3), "happy")
    with pytest.raises(ConfigError, match="nothing to fill"):
        fill_mask(40, "middle", 20)


def test_mean_imputation():
    x = torch.arange(4.0)[None, :, None, None].expand(1, 4, 2, 3)
    out = mean_imputation(x, torch.tensor([True, False, False, True]))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.0, 1.5, 1.5, 3.0]))


def run_cli(capsys, monkeypatch, *args):
    """``mien ARGS`` in this process through the real entry point: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["mien", *map(str, args)])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_cli_sample_writes_outputs_and_one_line_errors(trained, tmp_path, capsys, monkeypatch):
    cli = lambda *a: run_cli(capsys, monkeypatch, *a)  # noqa: E731
    neutral = tmp_path / "neutral.npy"
    np.save(neutral, real(1)[0, 0].numpy())
    code, err = cli("expr4d", "sample", trained, "--label", "happy", "--neutral", neutral, "--frames", 36, "-n", 2,
                    "--passes", 1, "--out", tmp_path / "o")
    assert code == 0, err
    saved = np.load(tmp_path / "o" / "sequences.npz")
    assert saved["sequences"].shape == (2, 36, 68, 3)
    assert np.allclose(saved["sequences"][:, 0], np.load(neutral), atol=1e-5)
    assert (tmp_path / "o" / "sequence_001.gif").is_file() and (tmp_path / "o" / "trajectories.png").is_file()
    known = tmp_path / "known.npz"
    np.savez(known, sequence=real(1)[0, :10].numpy())
    code, err = cli("expr4d", "sample", trained, "--fill", "middle", "--known", known, "-n", 1, "--out", tmp_path / "f")
    assert code == 0, err
    filled = np.load(tmp_path / "f" / "sequences.npz")["sequences"][0]
    given = real(1)[0, :10].numpy()
    assert np.allclose(filled[:5], given[:5], atol=1e-5) and np.allclose(filled[-5:], given[5:], atol=1e-5)
    for args, message in [(("--known", tmp_path / "missing.npy", "--fill", "end"), "does not exist"),
                          (("--label", "grumpy"), "unknown expression label"),
                          (("--label", "happy", "--frames", 10), "outside the trained range"),
                          (("--clip-x0", -1), "'--clip-x0': must be a finite number > 0")]:
        code, err = cli("expr4d", "sample", trained, *args, "--out", tmp_path / "e")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_actor_baseline_learns_and_samples_by_label():

    torch.manual_seed(0)
    model = build_model({"name": "actor", "d_model": 32, "layers": 1, "heads": 2, "ff": 64, "dropout": 0.0})
    ds = WorldSequenceDataset(64, 0, (35, 45))
    batch = pad_sequences([ds[i] for i in range(64)])
    assert model.fit_data(batch)["coord_scale"] > 0  # the engine's step before step 0
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss = model.loss(batch)["recon"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    assert model.sample(3, "happy", frames=38)["sequence"].shape == (3, 38, 68, 3)
    with pytest.raises(ConfigError, match="unknown expression label"):
        model.sample(1, "grumpy")


def test_a_denoiser_narrower_than_a_frame_warns():
    # 68 landmarks x 3 = 204 coordinates; a per-frame width below that caps eps prediction
    from mien.models.expr4d import Expr4DConfig

    with pytest.warns(UserWarning, match="less than the 204 coordinates"):
        Expr4DConfig(d_model=128)
    with pytest.warns(UserWarning, match="unet denoiser is 128 wide"):
        Expr4DConfig(backbone="unet", unet_widths=[128, 256])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Expr4DConfig(d_model=256)
        Expr4DConfig(backbone="unet", unet_widths=[256, 512])


def test_clip_x0_bounds_every_sample_and_is_checked(trained):
    """With clip_x0 the last reverse step returns the clamped x0 prediction, so samples stay within
    +-clip standard units whatever the denoiser predicts. A trained model takes it (and the other
    sampling options) afterwards, checked as at construction; architecture fields cannot change."""
    model = mien.load(trained).with_sampling(clip_x0=0.5)
    out = model.normalise(unconditional(model, 4, 40, generator=torch.Generator().manual_seed(0)))
    assert out.abs().max() <= 0.5 + 1e-4
    model.with_sampling(clip_x0=None)
    free = model.normalise(unconditional(model, 4, 40, generator=torch.Generator().manual_seed(0)))
    assert free.abs().max() > 0.5
    with pytest.raises(ConfigError, match="clip_x0"):
        build_model({"name": "expr4d", "clip_x0": -1.0, **SIZE})
    with pytest.raises(ConfigError, match="clip_x0"):
        model.with_sampling(clip_x0=0.0)
    with pytest.raises(ConfigError, match="d_model cannot change after training"):
        model.with_sampling(d_model=8)
