"""``mien evaluator``: train the evaluator networks (the recipes of the shipped weights) with the
engine, then record their held-out scores in meta.json."""

from __future__ import annotations

from pathlib import Path

import typer

from mien.cli.options import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, option, output

app = typer.Typer(help="Train mien's evaluator networks (image CNN, landmark-sequence classifier).",
                  no_args_is_help=True)


def _fit(recipe: dict, out: Path, scores, progress: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from mien.metrics.heldout import HELDOUT_SEED
    from mien.models import checkpoint
    from mien.train import fit, run_config

    fit(run_config(recipe), out, progress=progress)
    model = checkpoint.load(out)
    extra = {"heldout_seed": HELDOUT_SEED, "heldout": scores(model)}
    if recipe["model"]["name"] == "evaluator" and recipe["model"].get("labels") != "data":
        from mien.evaluator.weights import world_fingerprint

        extra["world_fingerprint"] = world_fingerprint(model.config.size)
    meta = checkpoint.update_meta(out, recipe=recipe, **extra)
    table = Table("held-out score", "value", title=f"wrote {out}")
    for k, v in meta["heldout"].items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)


@app.command("train")
def train(size: int = option(64, POSITIVE_INT, help="Image size in pixels (32, 64, 128)."),
          steps: int = option(4000, POSITIVE_INT, help="Training steps (each a fresh batch of world faces)."),
          batch_size: int = option(64, POSITIVE_INT, help="Faces per step."),
          identities: int = option(1000, POSITIVE_INT, help="World identities for the ArcFace identity loss."),
          seed: int = option(0, NON_NEGATIVE_INT, help="World and initialisation seed."),
          lr: float = option(2e-3, POSITIVE, help="Peak learning rate (AdamW, warm-up then cosine decay)."),
          sex_weight: float = option(4.0, NON_NEGATIVE, help="Weight of the sex label against the other attributes."),
          init: Path = typer.Option(None, help="Start from this evaluator folder (a second training stage)."),
          data: Path = typer.Option(None, help="Fine-tune on this prepared, labelled folder (mien data prepare) "
                                               "instead of the world, from the shipped evaluator (or --init)."),
          split: str = typer.Option(None, help="With --data: train on this split (scores on val, else test)."),
          out: Path = output(None, folder=True, help="Checkpoint folder to write (default: evaluator-SIZE)."),
          progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar.")):
    """Train the image evaluator on world faces (a mien checkpoint folder with held-out scores).
    The shipped 64-px weights: `--steps 4000 --sex-weight 1 --out A`, then
    `--steps 1200 --seed 1 --lr 5e-4 --init A --out B`, then `--steps 600 --seed 2 --lr 5e-4 --init B`
    (the world with tinted lenses). With --data, fine-tune it on real faces."""
    from mien.evaluator.recipes import evaluator_recipe, finetune_recipe
    from mien.metrics.heldout import data_scores, evaluator_scores

    if data is not None:
        from mien.metrics.heldout import heldout_folder

        def scores(model):
            return data_scores(model, heldout_folder(data, size, split))

        recipe = finetune_recipe(str(data), size, steps, batch_size, seed, lr, init, split)
        _fit(recipe, out or Path(f"evaluator-{size}-{data.name}"), scores, progress)
        return
    recipe = evaluator_recipe(size, steps, batch_size, seed, identities, lr, sex_weight, init)
    _fit(recipe, out or Path(f"evaluator-{size}"), evaluator_scores, progress)


@app.command("train-sequence")
def train_sequence(steps: int = option(1500, POSITIVE_INT, help="Training steps (each a fresh batch of sequences)."),
                   seed: int = option(0, NON_NEGATIVE_INT, help="World and initialisation seed."),
                   out: Path = output(Path("sequence-classifier"), folder=True, help="Checkpoint folder to write."),
                   progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar.")):
    """Train the landmark-sequence classifier (LSTM + linear, Zou §3.6) on world sequences."""
    from mien.evaluator.recipes import sequence_recipe
    from mien.metrics.heldout import sequence_scores

    _fit(sequence_recipe(steps, seed=seed), out, sequence_scores, progress)
