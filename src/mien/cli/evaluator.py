"""``mien evaluator``: train the evaluator networks (the recipes of the shipped weights)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Train mien's evaluator networks (image CNN, landmark-sequence classifier).",
                  no_args_is_help=True)


def _report(out: Path, meta: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("held-out score", "value", title=f"wrote {out}")
    for k, v in meta["heldout"].items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)


@app.command("train")
def train(size: int = typer.Option(64, help="Image size in pixels (32, 64, 128)."),
          steps: int = typer.Option(4000, help="Training steps (each a fresh batch of world faces)."),
          batch_size: int = typer.Option(64, help="Faces per step."),
          identities: int = typer.Option(1000, help="World identities for the ArcFace identity loss."),
          seed: int = typer.Option(0, help="World and initialisation seed."),
          lr: float = typer.Option(2e-3, help="Peak learning rate (AdamW, warm-up then cosine decay)."),
          sex_weight: float = typer.Option(4.0, help="Weight of the sex label against the other attributes."),
          init: Path = typer.Option(None, help="Start from this weights folder (a second training stage)."),
          out: Path = typer.Option(None, help="Weights folder to write (default: evaluator-SIZE).")):
    """Train the image evaluator on world faces and write model.safetensors + meta.json.
    The shipped 64-px weights: `--steps 4000 --sex-weight 1 --out A`, then
    `--steps 1200 --seed 1 --lr 5e-4 --init A`."""
    from mien.evaluator.train import train_evaluator
    from mien.evaluator.weights import save_weights
    from mien.io import ensure_writable_dir

    out = ensure_writable_dir(out or Path(f"evaluator-{size}"))
    model, meta = train_evaluator(size, steps, batch_size, seed, identities, lr, sex_weight, init)
    _report(save_weights(model, out, "evaluator", meta), meta)


@app.command("train-sequence")
def train_sequence(steps: int = typer.Option(1500, help="Training steps (each a fresh batch of sequences)."),
                   seed: int = typer.Option(0, help="World and initialisation seed."),
                   out: Path = typer.Option(Path("sequence-classifier"), help="Weights folder to write.")):
    """Train the landmark-sequence classifier (LSTM + linear, Zou §3.6) on world sequences."""
    from mien.evaluator.train import train_sequence_classifier
    from mien.evaluator.weights import save_weights
    from mien.io import ensure_writable_dir

    out = ensure_writable_dir(out)
    model, meta = train_sequence_classifier(steps, seed=seed)
    _report(save_weights(model, out, "sequence", meta), meta)
