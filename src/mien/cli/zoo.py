"""``mien zoo list|get|add``: the small checkpoints that ship with mien (see :mod:`mien.zoo`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mien.cli.options import output

_HEADLINE = ("psnr", "fid_mien", "mig", "dci_disentanglement", "expression_acc", "csim_mien")

app = typer.Typer(help="Shipped small checkpoints and the recipes that reproduce them.", no_args_is_help=True)


@app.command("list")
def list_models():
    """Name, family, size, steps, recipe and measured metrics of every zoo model."""
    from rich.console import Console
    from rich.table import Table

    from mien import zoo

    table = Table("name", "model", "parameters", "steps", "recipe", "metrics", title="mien zoo")
    for e in zoo.entries():
        shown = [k for k in _HEADLINE if k in e["metrics"]] or list(e["metrics"])[:4]
        metrics = ", ".join(f"{k} {e['metrics'][k]:.3g}" for k in shown)
        table.add_row(e["name"], str(e["model"]), f"{e['parameters']:,}", str(e["steps"]), str(e["recipe"]), metrics)
    Console().print(table)


@app.command("get")
def get(name: str = typer.Argument(..., help="Zoo model name (see `mien zoo list`)."),
        out: Path = output(None, folder=True, help="Folder to write (default: runs/zoo/NAME).")):
    """Copy a zoo model to a checkpoint folder that every mien verb accepts."""
    from mien import zoo

    dest = zoo.get(name, out or Path("runs/zoo") / name)
    typer.echo(f"wrote {dest}")


@app.command("add")
def add(ckpt: Path = typer.Argument(..., help="Checkpoint folder to publish."),
        name: str = typer.Option(..., help="Zoo name."),
        recipe: str = typer.Option(..., help="The config that reproduces it, e.g. zoo/vae (a preset) or a YAML path."),
        metrics: Path = typer.Option(None, help="JSON written by `mien eval ckpt` to record in meta.json.")):
    """Publish a checkpoint into the package's zoo (float16 weights, recipe, metrics)."""
    from mien import zoo
    from mien.errors import DataError

    measured = {}
    if metrics is not None:
        try:
            measured = json.loads(metrics.read_text())["metrics"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{metrics} is not a metrics file of `mien eval ckpt --out`; rerun that") from None
    typer.echo(f"wrote {zoo.publish(ckpt, name, recipe, measured)}")
