"""What `mien reproduce zou-ch5` and `zou-ch6` share: rows of label models (a preset and
overrides each), trained through the engine or reused, scored on unseen world faces with their
true labels (:func:`mien.control.swap.label_scores`: SR(-), SR(+), CFD, BCA, the swaps' FID, and
the distances to the exact swaps that the thesis could not compute), swap grids, and markdown
tables with the thesis's numbers beside them (Zou thesis Tab. 5.1, 6.1, 6.2, 6.4-6.7; digest F).

A row whose preset is not shipped (e.g. ``cvqvae/...`` before that family is merged) is listed
as skipped, not trained."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mien.config import PRESETS
from mien.control.swap import label_scores, label_swaps
from mien.experiments.processes import in_processes
from mien.experiments.zou_ch3 import _train as train_or_reuse
from mien.metrics.image import lpips_mien

TEST_SEED = 90_201
GRID_PAIRS = 4
# The smile rows draw half the faces happy (smile = happy at intensity >= 0.2, 40 % of faces; the
# world's own marginal gives 11 %, CelebA's Smiling about 48 %), a named departure from the iid world.
SMILE = ("data.labels=[smile]", "model.labels=[smile]", "data.weights={expression: {happy: 0.5}}")


@dataclass(frozen=True)
class Row:
    """A table row: ``family``'s preset (``preset``, default the experiment's) with ``overrides``
    (``{runs}`` in one stands for the runs folder, e.g. a two-step variant's pretrained run);
    ``only_at``: the experiment presets the row runs at (all when empty); ``step_share``: the
    share of the configured ``train.max_steps`` it trains (a reduced sweep's rows, e.g. 0.4)."""

    name: str
    family: str
    overrides: tuple[str, ...] = ()
    preset: str | None = None
    only_at: tuple[str, ...] = ()
    step_share: float = 1.0

    def config(self, preset: str) -> Path | None:
        """The preset file, None when it is not shipped or the row does not run at ``preset``."""
        path = PRESETS / self.family / f"{self.preset or preset}.yaml"
        return path if path.is_file() and (not self.only_at or preset in self.only_at) else None

    def folder(self, preset: str) -> str:
        """The run's folder name, from what it trains (rows of several tables that train the same
        thing share a run)."""
        share = [f"steps{round(100 * self.step_share)}"] if self.step_share < 1 else []
        key = "_".join([self.family, self.preset or preset, *self.overrides, *share])
        return "_".join(filter(None, "".join(c if c.isalnum() else "_" for c in key.lower().replace("{runs}/", "")).split("_")))


def train_rows(rows: list[Row], preset: str, out: Path, overrides: list[str], progress: bool,
               jobs: int = 1) -> dict[str, Path]:
    """Checkpoint folders ``out/runs/<row>`` of the rows that can run (trained, or reused when
    finished); a row that appears in several tables trains once. ``jobs`` > 1 trains that many rows
    at a time in separate processes (one torch thread each unless OMP_NUM_THREADS says more), rows
    that start from another row's run (``{runs}`` in their overrides) after the others."""
    from mien.train import load_run_config

    todo, folder_of = {}, {}  # one training per folder: rows of several tables may train the same thing
    for row in rows:
        path = row.config(preset)
        if path is not None and row.name not in folder_of:
            folder = out / "runs" / row.folder(preset)
            extra = [o.replace("{runs}", str(out / "runs")) for o in row.overrides]
            cfg = load_run_config(path, [*overrides, *extra])
            if row.step_share < 1:
                steps = max(1, round(cfg.train.max_steps * row.step_share))
                cfg = load_run_config(path, [*overrides, *extra, f"train.max_steps={steps}"])
            todo.setdefault(folder, (cfg, any("{runs}" in o for o in row.overrides)))
            folder_of[row.name] = folder
    if jobs <= 1:
        runs = {folder: train_or_reuse(cfg, folder, progress) for folder, (cfg, _) in todo.items()}
    else:
        runs = {}
        for second in (False, True):  # the rows other rows start from, then those
            # progress False: no bars from several processes at once
            wave = {folder: (cfg, folder, False) for folder, (cfg, after) in todo.items() if after == second}
            runs.update(in_processes(train_or_reuse, wave, jobs))
    return {name: runs[folder] for name, folder in folder_of.items()}


@torch.no_grad()
def score_run(run: Path, n: int, grid: Path | None = None) -> dict:
    """:func:`label_scores` of the run's first label on ``n`` unseen faces of its world, plus
    ``lpips_mien`` of plain reconstructions (Tab. 5.1's LPIPS) and the run's training ``steps``; ``grid``: a PNG of the first
    pairs (face, swap, exact swap for each face of a pair)."""
    import mien
    from mien.evaluator import evaluator_for
    from mien.models.checkpoint import read_meta, training_world
    from mien.report.grid import save_grid

    model = mien.load(run).eval()
    batch = training_world(run, n, TEST_SEED).batch(range(n))
    x, f = batch["image"], batch["factors"]
    ev = evaluator_for(x.shape[-1])
    scores = label_scores(model, x, f, None, ev)
    rec = torch.cat([model.reconstruct(x[i:i + 250].to(model.device)).cpu() for i in range(0, n, 250)])
    scores["lpips_mien"] = lpips_mien(x, rec.clamp(-1, 1), ev)
    scores["steps"] = read_meta(run).get("steps", 0)
    if grid is not None:
        s = label_swaps(model, x[:4 * GRID_PAIRS * 8], {k: v[:4 * GRID_PAIRS * 8] for k, v in f.items()})
        k = min(GRID_PAIRS, len(s["index_a"]))
        cells = []
        for i in range(k):
            ia, ib = s["index_a"][i], s["index_b"][i]
            cells += [x[ia], s["a"][i], s["target_a"][i], x[ib], s["b"][i], s["target_b"][i]]
        name = model.config.labels[0]
        save_grid(torch.stack(cells).clamp(-1, 1), grid, nrow=6, scale=2,
                  labels=[f"{name}=1", "swapped", "exact", f"{name}=0", "swapped", "exact"] + [""] * (len(cells) - 6))
    return scores


def standard_error_note(scores: dict[str, dict]) -> str:
    """A sentence giving an SR's standard error at the fewest pairs scored (binomial, at most
    sqrt(1/4n)), so that differences in the tables can be read against it."""
    pairs = [s["pairs"] for s in scores.values() if s.get("pairs")]
    if not pairs:
        return ""
    n = int(min(pairs))
    return (f"With {n} or more swap pairs a row, one standard error of an SR is at most {50 / n ** 0.5:.1f} points; "
            "'y from z' is the held-out balanced accuracy of a linear probe reading the label from z "
            "(50 % when z keeps none of it).\n\n")


def _cell(value, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "d":
        return str(int(value))
    return f"{100 * value:.2f}%" if kind == "%" else f"{value:.3f}" if kind == "3" else f"{value:.2f}"


def table(title: str, rows: list[Row], scores: dict[str, dict], columns: list[tuple[str, str, str]],
          thesis: dict[str, tuple] | None = None, skipped_note: str = "") -> str:
    """A markdown table: one line per row (``-`` where it did not run), ``columns`` as (header,
    score key, format: '%', '3', '2' or 'd' (an integer)); ``thesis``: the thesis's values per row name, shown
    after the measured ones."""
    thesis = thesis or {}
    width = max((len(v) for v in thesis.values()), default=0)
    header = ["Model", *[c[0] for c in columns]]
    if width:
        header += [f"thesis {c[0]}" for c in columns[:width]]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        got = scores.get(row.name)
        cells = [row.name, *[_cell(got.get(key) if got else None, kind) for _, key, kind in columns]]
        if width:
            t = thesis.get(row.name, ())
            cells += [str(t[i]) if i < len(t) else "-" for i in range(width)]
        lines.append("| " + " | ".join(cells) + " |")
    missing = [r.name for r in rows if r.name not in scores]
    if missing:
        lines += ["", f"Not run here: {', '.join(missing)}{skipped_note}."]
    return "\n".join([*lines, ""])


def ordering(description: str, names: list[str], key: str, scores: dict[str, dict], higher: bool = True,
             strict: list[bool] | None = None) -> str:
    """Whether ``scores[names[0]][key] >= / > scores[names[1]][key] ...`` holds (``strict[i]``:
    '>' between names i and i+1, else '>='; ``higher=False`` reads '<'), with the values."""
    if not all(n in scores for n in names):
        return f"- {description}: not checked (rows missing)"
    values = [scores[n][key] for n in names]
    sign = 1 if higher else -1
    strict = strict or [True] * (len(names) - 1)
    holds = all((sign * (a - b) > 0) if s else (sign * (a - b) >= 0) for a, b, s in zip(values, values[1:], strict))
    shown = ", ".join(f"{n} {v:.3f}" for n, v in zip(names, values))
    return f"- {description}: {'holds' if holds else 'does not hold'} ({shown})"


def best(description: str, name: str, others: list[str], key: str, scores: dict[str, dict], higher: bool = True) -> str:
    """Whether row ``name`` beats every row of ``others`` that ran on ``key``."""
    ran = [o for o in others if o in scores]
    if name not in scores or not ran:
        return f"- {description}: not checked (rows missing)"
    sign = 1 if higher else -1
    holds = all(sign * (scores[name][key] - scores[o][key]) > 0 for o in ran)
    shown = ", ".join(f"{n} {scores[n][key]:.3f}" for n in [name, *ran])
    return f"- {description}: {'holds' if holds else 'does not hold'} ({shown})"


def score_rows(runs: dict[str, Path], out: Path, n: int) -> dict[str, dict]:
    """Scores of every trained row, with its swap grid at ``out/grids/<run>.png`` (a run shared
    by several rows is scored once)."""
    done: dict[Path, dict] = {}
    for run in runs.values():
        if run not in done:
            done[run] = score_run(run, n, out / "grids" / f"{run.name}.png")
    return {name: done[run] for name, run in runs.items()}


def figures(runs: dict[str, Path]) -> str:
    lines = ["### Swap grids (per pair: the face, its swap, the world's exact swap)", ""]
    for name, run in runs.items():
        lines += [f"**{name}**", "", f"![{name}](grids/{run.name}.png)", ""]
    return "\n".join(lines)
