"""``mien swap``: exchange a label and its features between two faces (Zou thesis §5.4, §6.4)."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from mien.cli.options import NON_NEGATIVE_INT, option, output


def swap(ckpt: Path = typer.Argument(..., help="Checkpoint folder of an m2, ccvae, jdvae or cvqvae run."),
         a: str = typer.Option("0", help="First face: a world face index or an image file."),
         b: str = typer.Option("1", help="Second face (the other value of the label): an index or an image file."),
         label: str = typer.Option(None, help="Label to swap (default: the model's first)."),
         predicted: bool = typer.Option(False, "--predicted", help="Use argmax q(y|x) instead of the world's true labels "
                                                                   "(always for image files)."),
         align: bool = typer.Option(True, "--align/--no-align", help="Detect and FFHQ-align the faces of image files."),
         seed: int = option(12345, NON_NEGATIVE_INT, help="World seed (default: faces unseen in training)."),
         out: Path = output(Path("swap.png"), help="PNG grid to write.", folder=False)):
    """Rows a and b: input, reconstruction, and the face with the other's label and features."""
    import mien
    from mien.control.swap import face_and_labels, label_index, swap as swap_pair
    from mien.report.grid import save_grid

    model = mien.load(ckpt)
    l = label_index(model, label)
    name, size = model.config.labels[l], model.config.image_size
    (xa, ya), (xb, yb) = (face_and_labels(s, ckpt, seed, size, model.config.labels, align) for s in (a, b))
    if predicted:
        ya = yb = None
    with torch.no_grad():
        r = swap_pair(model, xa, xb, l, ya, yb)
    va, vb = int(r["y_a"][0, l]), int(r["y_b"][0, l])
    save_grid(torch.cat([xa, r["a_rec"], r["a"], xb, r["b_rec"], r["b"]]), out, nrow=3, scale=2,
              labels=[f"a: {name}={va}", "reconstruction", f"{name}={vb} of b", f"b: {name}={vb}", "reconstruction",
                      f"{name}={va} of a"])
    typer.echo(f"wrote {out}")
