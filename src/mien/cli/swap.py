"""``mien swap``: exchange a label and its features between two faces (Zou thesis §5.4, §6.4)."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from mien.cli.options import NON_NEGATIVE_INT, option, output


def swap(ckpt: Path = typer.Argument(..., help="Checkpoint folder of an m2, ccvae, jdvae or cvqvae run."),
         a: int = option(0, NON_NEGATIVE_INT, help="Index of the first world face."),
         b: int = option(1, NON_NEGATIVE_INT, help="Index of the second world face (the other value of the label)."),
         label: str = typer.Option(None, help="Label to swap (default: the model's first)."),
         predicted: bool = typer.Option(False, "--predicted", help="Use argmax q(y|x) instead of the world's true labels."),
         seed: int = option(12345, NON_NEGATIVE_INT, help="World seed (default: faces unseen in training)."),
         out: Path = output(Path("swap.png"), help="PNG grid to write.", folder=False)):
    """Rows a and b: input, reconstruction, and the face with the other's label and features."""
    import mien
    from mien.control.swap import label_index, swap as swap_pair
    from mien.models.checkpoint import training_world
    from mien.report.grid import save_grid

    model = mien.load(ckpt)
    l = label_index(model, label)
    name = model.config.labels[l]
    batch = training_world(ckpt, max(a, b) + 1, seed, model.config.image_size).batch([a, b])
    x = batch["image"]
    y = None if predicted else torch.stack([batch["factors"][n].float() for n in model.config.labels], 1)
    with torch.no_grad():
        r = swap_pair(model, x[:1], x[1:], l, None if y is None else y[:1], None if y is None else y[1:])
    ya, yb = int(r["y_a"][0, l]), int(r["y_b"][0, l])
    save_grid(torch.cat([x[:1], r["a_rec"], r["a"], x[1:], r["b_rec"], r["b"]]), out, nrow=3, scale=2,
              labels=[f"a: {name}={ya}", "reconstruction", f"{name}={yb} of b", f"b: {name}={yb}", "reconstruction",
                      f"{name}={ya} of a"])
    typer.echo(f"wrote {out}")
