"""`mien reproduce zou-ch3-mesh` (experiment): Zou thesis Tab. 3.5 (§3.7.1) on the mesh world: the
per-vertex error (mm, mean +- std over held-out vertices and frames) of the landmark-guided mesh
decoder Z2 and its baselines (Linear, CoMA, the S2D decoder without the neutral-mesh attention),
each trained on the same data and loss, on an expression split (3 motions held out) and an
identity split (3 subjects held out), plus per-vertex error heat maps of one held-out frame and
closed-form references that are no row of the thesis (no displacement; ridge regressions of dM_f
on dL_f, without and with the neutral mesh's principal components), which show how much of the
world is linear in dL_f and how much a read-out of M learnt from the training subjects adds.

The sequences are drawn once and held in memory (the world builds them on the fly); every row
trains through the engine into ``OUT/runs/<split>-<variant>``; a finished run is reused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mien.errors import ConfigError
from mien.io import atomic_write_text, ensure_writable_dir

ROWS = {"linear": "Linear [29]", "coma": "CoMA", "s2d": "S2D (w/o attention)", "proposed": "Proposed"}
THESIS = {"linear": ((0.67, 0.76), (0.73, 0.77)), "coma": ((0.58, 0.63), (0.63, 0.67)),
          "s2d": ((0.54, 0.59), (0.57, 0.64)), "proposed": ((0.45, 0.51), (0.50, 0.58))}  # "Ours (w/o attention)"
SPLITS = {"expression": "motion", "identity": "subject"}
HELD_OUT = 3  # §3.7.1: "3 expressions (expression split) or 3 subjects (identity split)"


class HeldSequences(Dataset):
    """Mesh sequences held in memory (one batch dict of the ``mesh_sequences`` keys), with the
    source's ``template`` and ``factors`` so that model configs read the topology from it."""

    def __init__(self, batch: dict, template, factors=()):
        self.data, self.template, self.factors = batch, template, list(factors)

    def __len__(self) -> int:
        return len(self.data["mesh"])

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.data.items()}

    def part(self, mask: torch.Tensor) -> "HeldSequences":
        return HeldSequences({k: v[mask] for k, v in self.data.items()}, self.template, self.factors)


def split_masks(data: HeldSequences, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) masks: the last 3 motions or the last 3 subjects held out."""
    key = data.data[SPLITS[split]]
    values = key.unique()
    if len(values) <= HELD_OUT:
        raise ConfigError(f"the {split} split holds out {HELD_OUT} {SPLITS[split]}s; the data has {len(values)}")
    test = key >= values[-HELD_OUT]
    return ~test, test


def _train(cfg, out: Path, dataset, progress: bool) -> Path:
    from mien.models.checkpoint import read_meta
    from mien.train import fit

    if (out / "meta.json").is_file() and read_meta(out).get("steps", 0) >= cfg.train.max_steps:
        return out
    fit(cfg, out, resume=(out / "state" / "last.ckpt").is_file(), progress=progress, dataset=dataset)
    return out


def vertex_errors(model, data: HeldSequences, chunk: int = 4) -> torch.Tensor:
    """Per-vertex errors (S, T, V) in mm of ``model`` on every held-out sequence."""
    out = []
    with torch.no_grad():
        for i in range(0, len(data), chunk):
            b = {k: v[i:i + chunk] for k, v in data.data.items()}
            pred = model.deform(b["neutral"], b["landmarks"] - b["neutral_landmarks"][:, None])
            out.append((pred - b["mesh"]).norm(dim=-1))
    return torch.cat(out)


def _ridge_features(data: HeldSequences, pca) -> torch.Tensor:
    """[dL_f, p (x) dL_f, 1] per frame (rows S*T), p the neutral mesh's standardised principal
    components (``pca`` = (mean, basis, sd) of the training neutrals), or [dL_f, 1] (``pca`` None)."""
    d = data.data
    dl = (d["landmarks"] - d["neutral_landmarks"][:, None]).flatten(2).double()
    parts = [dl]
    if pca is not None:
        mean, basis, sd = pca
        p = (d["neutral"].flatten(1).double() - mean) @ basis / sd
        parts.append((p[:, None, :, None] * dl[:, :, None]).flatten(2))
    x = torch.cat(parts, 2).flatten(0, 1)
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)


def ridge_errors(train: HeldSequences, test: HeldSequences, components: int = 0, ridge: float = 1e-4) -> torch.Tensor:
    """Per-vertex errors (S, T, V) in mm of a closed-form reference that no row of Tab. 3.5 is: dM_f
    linear in dL_f (``components`` 0), or also in dL_f times each of the first ``components``
    principal components of the neutral mesh (fitted on the training subjects' neutrals), so the
    only identity information is what a linear read-out of M learns from the training subjects.
    Least squares with a ridge of ``ridge`` times the mean diagonal of the normal matrix."""
    pca = None
    if components:
        neutral = train.data["neutral"].flatten(1).double()
        mean = neutral.mean(0)
        basis = torch.linalg.svd(neutral - mean, full_matrices=False)[2][:components].T
        pca = (mean, basis, ((neutral - mean) @ basis).std(0).clamp_min(1e-12))
    x, y = _ridge_features(train, pca), (train.data["mesh"] - train.data["neutral"][:, None]).flatten(2).flatten(0, 1).double()
    a = x.T @ x
    w = torch.linalg.solve(a + ridge * a.diagonal().mean() * torch.eye(len(a), dtype=a.dtype), x.T @ y)
    truth = test.data["mesh"] - test.data["neutral"][:, None]
    return ((_ridge_features(test, pca) @ w).reshape(truth.shape) - truth).norm(dim=-1).float()


def reference_errors(train: HeldSequences, test: HeldSequences, components: int = 6) -> dict:
    """Mean per-vertex error (mm) of predicting no displacement, of the ridge on dL_f and of the ridge
    that also reads M through ``components`` principal components (:func:`ridge_errors`)."""
    none = (test.data["mesh"] - test.data["neutral"][:, None]).norm(dim=-1)
    return {"no displacement": float(none.mean()), "ridge on dL_f": float(ridge_errors(train, test).mean()),
            f"ridge on dL_f and {components} PCs of M": float(ridge_errors(train, test, components).mean())}


def decoder_seconds(model, data: HeldSequences) -> float:
    """Wall time of decoding one whole sequence (all frames) from its landmarks (§3.9.3 footnote)."""
    b = {k: v[:1] for k, v in data.data.items()}
    with torch.no_grad():
        start = time.perf_counter()
        model.deform(b["neutral"], b["landmarks"] - b["neutral_landmarks"][:, None])
    return time.perf_counter() - start


def _heatmap(models: dict, test: HeldSequences, path: Path) -> Path:
    """The apex frame of the first held-out sequence: ground truth, then each row coloured by its error."""
    from mien.report.mesh import save_error_heatmaps

    apex = int((test.data["mesh"][0] - test.data["neutral"][0]).norm(dim=-1).mean(-1).argmax())
    one = {k: v[:1] for k, v in test.data.items()}
    meshes, errors, labels = [one["mesh"][0, apex]], [torch.zeros(one["mesh"].shape[2])], ["ground truth"]
    with torch.no_grad():
        for variant, model in models.items():
            pred = model.deform(one["neutral"], one["landmarks"] - one["neutral_landmarks"][:, None])[0, apex]
            meshes.append(pred)
            errors.append((pred - one["mesh"][0, apex]).norm(dim=-1))
            labels.append(ROWS[variant])
    return save_error_heatmaps(torch.stack(meshes), torch.stack(errors), test.template.faces, path, labels=labels)


def _table(results: dict) -> str:
    lines = ["### Tab. 3.5: per-vertex error (mm), measured (thesis in brackets)", "",
             "| Method | Expression split | Identity split |", "|---|---|---|"]
    for variant, name in ROWS.items():
        cells = []
        for k, split in enumerate(SPLITS):
            r, (m, s) = results[split][variant], THESIS[variant][k]
            cells.append(f"{r['mean']:.3f} ± {r['std']:.3f} ({m:.2f} ± {s:.2f})")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def ordering(results: dict) -> str:
    """Which of the thesis's orderings (proposed < S2D w/o attention < CoMA < Linear) hold, per split."""
    lines = []
    for split, rows in results.items():
        ranked = sorted(rows, key=lambda v: rows[v]["mean"])
        holds = ranked == ["proposed", "s2d", "coma", "linear"]
        lines.append(f"- {split} split: {' < '.join(ROWS[v] for v in ranked)} "
                     f"({'the thesis ordering holds' if holds else 'differs from the thesis: Proposed < S2D < CoMA < Linear'})")
    return "\n".join(lines) + "\n"


def reproduce(config_path, out_dir, overrides: list[str] | None = None, progress: bool = True) -> Path:
    """Train (or reuse) the 4 rows x 2 splits, evaluate, write ``OUT/zou-ch3-mesh.md`` and
    ``results.json`` and the heat maps under ``OUT/heatmaps``; returns the report's path."""
    from mien.data.source import make_dataset
    import mien
    from mien.train import load_run_config

    out, overrides = ensure_writable_dir(out_dir), list(overrides or [])
    base = load_run_config(config_path, overrides)
    if base.model.get("name") != "meshdecoder":
        raise ConfigError(f"{config_path} is not a meshdecoder config; pass meshdecoder/<preset> or a copy of it")
    source = make_dataset(base.data)
    batch = {k: v for k, v in source.batch(range(len(source))).items() if torch.is_tensor(v)}  # the factor table stays out
    data = HeldSequences(batch, source.template, getattr(source, "factors", ()))
    results, timing, references = {}, {}, {}
    for split in SPLITS:
        train_mask, test_mask = split_masks(data, split)
        train, test = data.part(train_mask), data.part(test_mask)
        models = {}
        for variant in ROWS:
            cfg = load_run_config(config_path, [*overrides, f"model.variant={variant}"])
            run = _train(cfg, out / "runs" / f"{split}-{variant}", train, progress)
            models[variant] = mien.load(run).eval()
            e = vertex_errors(models[variant], test)
            results.setdefault(split, {})[variant] = {"mean": float(e.mean()), "std": float(e.std()),
                                                      "test_sequences": len(test), "train_sequences": len(train)}
            timing[variant] = decoder_seconds(models[variant], test)
        references[split] = reference_errors(train, test)
        _heatmap(models, test, out / "heatmaps" / f"{split}.png")
    atomic_write_text(out / "results.json", json.dumps({"results": results, "references": references,
                                                        "decoder_seconds": timing}, indent=2))
    frames = data.data["mesh"].shape[1]
    header = (f"## Zou thesis Tab. 3.5 on the mesh world ({Path(str(config_path)).name}, "
              f"{len(data)} sequences of {frames} frames, {data.template.n_vertices} vertices; "
              f"{HELD_OUT} motions or {HELD_OUT} subjects held out)\n\n"
              "Per-vertex Euclidean error between decoded and true meshes of the held-out sequences, "
              "mean ± std over vertices and frames, in mm. The thesis's numbers are on CoMA (FLAME, 5,023 "
              "vertices); compare orderings, not values.\n\n")
    timing_line = ("Decoder time per sequence (all frames, CPU): "
                   + ", ".join(f"{ROWS[v]} {s * 1000:.0f} ms" for v, s in timing.items()) + "\n\n")
    reference_lines = ("References, not rows of the thesis (closed form, fitted on the same training "
                       "sequences): " + "; ".join(f"{split} split: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items())
                                                 for split, r in references.items()) + " mm\n\n")
    pictures = "\n".join(f"**{s} split** (apex of the first held-out sequence)\n\n![{s}](heatmaps/{s}.png)\n"
                         for s in SPLITS)
    return atomic_write_text(out / "zou-ch3-mesh.md",
                             header + _table(results) + "\n" + ordering(results) + "\n" + reference_lines
                             + timing_line + pictures)
