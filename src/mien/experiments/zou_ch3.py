"""`mien reproduce zou-ch3` (experiment): the structure of Zou thesis Tabs. 3.1 (label control against the ground
truth and an ACTOR-style baseline), 3.3 (expression filling FFE/FFM/FFB against mean imputation)
and 3.6 (BiT against a causal transformer and a 1-D U-Net), on the world's sequences at a chosen
preset, scored by the shipped independent classifier (accuracy and Fréchet distance, §3.6).

Every model trains through the engine into ``OUT/runs/<name>``; a finished run is reused."""

from __future__ import annotations

from pathlib import Path

import torch

from mien.data.world.sequences import WorldSequenceDataset, pad_sequences
from mien.errors import ConfigError
from mien.control.expr4d import fill, fill_mask
from mien.io import atomic_write_text, ensure_writable_dir
from mien.models.expr4d import label_control, mean_imputation

BACKBONE_ROWS = {"unet": "1-D U-Net", "causal": "Transformer (causal)", "bit": "BiT"}
TEST_SEED, REFERENCE_SEED = 90_101, 90_102
FILL_LENGTHS = {"end": (10, 30), "middle": (5, 15), "begin": (10, 30)}  # §3.6.3
FILL_ROWS = {"end": "FFE", "middle": "FFM", "begin": "FFB"}


def _train(cfg, out: Path, progress: bool) -> Path:
    from mien.train import fit
    from mien.models.checkpoint import read_meta

    if (out / "meta.json").is_file() and read_meta(out).get("steps", 0) >= cfg.train.max_steps:
        return out
    fit(cfg, out, resume=(out / "state" / "last.ckpt").is_file(), progress=progress)
    return out


def _actor_config(cfg):
    """The baseline at the preset's size, on the same data and schedule of steps."""
    import copy

    from mien.train.config import RunConfig

    size = {k: cfg.model[k] for k in ("d_model", "layers", "heads", "ff", "dropout") if k in cfg.model}
    model = {"name": "actor", **size}
    return RunConfig(model, copy.deepcopy(cfg.data), copy.deepcopy(cfg.train))


def train_all(config_path, out: Path, overrides: list[str], progress: bool) -> dict:
    """Checkpoint folders of the three backbones and the baseline."""
    from mien.train import load_run_config

    runs = {}
    for backbone in BACKBONE_ROWS:
        cfg = load_run_config(config_path, [*overrides, f"model.backbone={backbone}"])
        if cfg.model.get("name") != "expr4d":
            raise ConfigError(f"{config_path} is not an expr4d config; pass expr4d/<preset> or a copy of it")
        runs[backbone] = _train(cfg, out / "runs" / backbone, progress)
    runs["actor"] = _train(_actor_config(load_run_config(config_path, overrides)), out / "runs" / "actor", progress)
    return runs


def _by_label(generate, labels: torch.Tensor) -> torch.Tensor:
    """Sequences for each label of ``labels`` (in that order), one batch per class."""
    out = [None] * len(labels)
    for y in labels.unique().tolist():
        idx = (labels == y).nonzero().flatten().tolist()
        for i, s in zip(idx, generate(int(y), len(idx))):
            out[i] = s.cpu()
    return torch.stack(out)


def _score(seqs, labels, reference, classifier) -> tuple[float, float]:
    from mien.metrics.sequence import sequence_accuracy, sequence_fd

    return (sequence_accuracy(seqs, labels, classifier=classifier),
            sequence_fd(seqs, reference, classifier=classifier))


def _table(title: str, header: list[str], rows: list[list]) -> str:
    fmt = [" | ".join(str(c) if isinstance(c, str) else f"{c:.2f}" for c in r) for r in rows]
    return "\n".join([f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *[f"| {r} |" for r in fmt], ""])


def evaluate(runs: dict, out: Path, n: int, frames: int, seed: int, sampling: dict | None = None) -> str:
    """Tabs. 3.1, 3.3 and 3.6 as markdown; animations of a few sequences per row under ``out/animations``.
    ``sampling`` (e.g. the preset's ``clip_x0``) replaces the diffusion runs' saved sampling options."""
    import mien
    from mien.evaluator import load_sequence_classifier
    from mien.report.sequences import write_outputs

    device = "cuda" if torch.cuda.is_available() else "cpu"
    ic = load_sequence_classifier()
    test = pad_sequences([WorldSequenceDataset(n, TEST_SEED, frames)[i] for i in range(n)])
    ref = pad_sequences([WorldSequenceDataset(n, REFERENCE_SEED, frames)[i] for i in range(n)])
    x, y = test["sequence"], test["label"]
    models = {k: mien.load(v, device) for k, v in runs.items()}
    for k in BACKBONE_ROWS:
        models[k].with_sampling(**(sampling or {}))
    g = torch.Generator().manual_seed(seed)
    acc_gt, fd_gt = _score(x, y, ref["sequence"], ic)
    gen = {k: _by_label(lambda c, m, k=k: label_control(models[k], c, m, frames, generator=g), y)
           for k in BACKBONE_ROWS}
    gen["actor"] = _by_label(lambda c, m: models["actor"].sample(m, c, generator=g, frames=frames)["sequence"], y)
    scores = {k: _score(v, y, x, ic) for k, v in gen.items()}
    for k, v in gen.items():
        write_outputs(v[:4], out / "animations" / f"label_{k}", [models[k].config.class_names[int(c)] for c in y[:4]])
    t31 = _table("Tab. 3.1: label control", ["Model", "Acc (%)", "FD"],
                 [["Ground truth", 100 * acc_gt, fd_gt],
                  ["ACTOR-style CVAE", 100 * scores["actor"][0], scores["actor"][1]],
                  ["Ours (BiT, Alg. 1)", 100 * scores["bit"][0], scores["bit"][1]]])
    t36 = _table("Tab. 3.6: backbone ablation (label control)", ["Model", "Acc (%)", "FD"],
                 [[name, 100 * scores[k][0], scores[k][1]] for k, name in BACKBONE_ROWS.items()])
    rows = []
    for mode, (lo, hi) in FILL_LENGTHS.items():
        known = torch.randint(lo, hi + 1, (n,), generator=g)
        mask = torch.stack([fill_mask(frames, mode, int(k)) for k in known])
        imputed = mean_imputation(x, mask)
        filled = fill(models["bit"], x, mask, generator=g).cpu()
        write_outputs(filled[:4], out / "animations" / f"fill_{mode}", [FILL_ROWS[mode]] * 4)
        (acc_mean, fd_mean), (acc_ours, fd_ours) = _score(imputed, y, x, ic), _score(filled, y, x, ic)
        rows.append([FILL_ROWS[mode], 100 * acc_mean, fd_mean, 100 * acc_ours, fd_ours])
    t33 = _table("Tab. 3.3: expression filling", ["Task", "Mean imputation Acc (%)", "FD", "Ours Acc (%)", "FD"], rows)
    return "\n".join([t31, t33, t36, _figures(out / "animations")])


def _figures(folder: Path) -> str:
    """Each row's landmark trajectories and its first animation, linked relative to the report."""
    lines = ["### Samples (trajectories of four sequences per row; the first as an animation)", ""]
    for row in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        lines += [f"**{row}**", "", f"![{row} trajectories](animations/{row}/trajectories.png) "
                  f"![{row} animation](animations/{row}/sequence_000.gif)", ""]
    return "\n".join(lines)


def reproduce(config_path, out_dir, overrides: list[str] | None = None, n: int = 110, frames: int = 40,
              seed: int = 0, progress: bool = True) -> Path:
    """Train (or reuse) the runs, evaluate, write ``OUT/zou-ch3.md``; returns its path."""
    from mien.models.expr4d import Expr4DConfig
    from mien.train import load_run_config

    out, overrides = ensure_writable_dir(out_dir), list(overrides or [])
    runs = train_all(config_path, out, overrides, progress)
    preset = load_run_config(config_path, overrides).model
    body = evaluate(runs, out, n, frames, seed, {k: preset[k] for k in Expr4DConfig.SAMPLING if k in preset})
    header = (f"## Zou thesis ch. 3 on the world ({Path(config_path).name}, {n} test sequences of {frames} frames)\n\n"
              "Accuracy and Fréchet distance (FD) of the shipped independent sequence classifier; FD of generated "
              "sequences is against the test set, that of the ground truth against a second real set.\n\n")
    return atomic_write_text(out / "zou-ch3.md", header + body)
