"""`mien control`: multilinear (tensor, Haas H1) and rank-one NRSfM (Haas H2) control of a GAN's latents."""

from __future__ import annotations

import typer

from mien.cli import control_nrsfm, control_tensor

app = typer.Typer(help="Tensor (H1) and NRSfM (H2) control of a GAN's latents.", no_args_is_help=True)
app.add_typer(control_tensor.app, name="tensor")
app.add_typer(control_nrsfm.app, name="nrsfm")
