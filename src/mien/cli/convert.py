"""``mien convert``: checkpoints of the field -> mien checkpoint folders
(``mien convert rosinality CKPT.pt --out RUN``)."""

from __future__ import annotations

from pathlib import Path

import typer

from mien.cli.options import POSITIVE_INT, option, output

app = typer.Typer(help="Convert checkpoints of other StyleGAN2 implementations to mien checkpoints.",
                  no_args_is_help=True)


@app.command("rosinality")
def rosinality(ckpt: Path = typer.Argument(..., help="rosinality/stylegan2-pytorch .pt file (g_ema or g, d, latent_avg)."),
               out: Path = output(..., help="mien checkpoint folder to write.", folder=True),
               size: int = option(None, POSITIVE_INT, help="Expected image size (checked; read from the weights by default)."),
               channel_multiplier: int = option(None, POSITIVE_INT, help="Expected channel multiplier (checked; config-f: 2).")):
    """Map a rosinality StyleGAN2 state dict (loaded weights-only, never unpickling code) to mien's
    stylegan layout; the folder loads with mien.load and every mien verb."""
    from mien.models import checkpoint
    from mien.models.stylegan.convert import from_rosinality, read_checkpoint

    model, config, notes = from_rosinality(read_checkpoint(ckpt), size, channel_multiplier)
    checkpoint.save(model, out, config, {"steps": 0, "converted_from": str(ckpt), **notes})
    c = config["model"]
    typer.echo(f"wrote {out}: stylegan {c['image_size']} px, widths {c['widths']}, generator {notes['generator']}, "
               f"discriminator {notes['discriminator']}, w_avg {notes['w_avg']}")
