"""`mien control nrsfm`: rank-one NRSfM control of a GAN's latents (Haas P-III, system H2).

``fit RUN --out model/``: the NRSfM of the GAN's generated landmarks and phi per latent space
(nrsfm.safetensors + nrsfm.json); ``edit MODEL --yaw 20 [--image face.png | --index 3] --out grid.png``:
the face turned through phi by the linear (Eq. 14) or gradient (Eq. 15) editor."""

from __future__ import annotations

from pathlib import Path

import typer

from mien.cli.options import FINITE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, option, output
from mien.errors import ConfigError

app = typer.Typer(help="Rank-one NRSfM control (Haas P-III): fit on a GAN, edit pose.", no_args_is_help=True)


@app.command("fit")
def fit(run: Path = typer.Argument(..., help="StyleGAN checkpoint folder (e.g. the zoo GAN: mien zoo get stylegan)."),
        out: Path = output(Path("nrsfm"), help="Folder for nrsfm.safetensors and nrsfm.json.", folder=True),
        n: int = option(2000, POSITIVE_INT, "-n", help="Generated faces whose landmarks are factorised."),
        bases: int = option(12, POSITIVE_INT, help="Rank-one deformation bases K (q has K + 8 entries)."),
        steps: int = option(2000, POSITIVE_INT, help="Adam steps of each regressor phi (Eq. 12)."),
        spaces: str = typer.Option("z,w,w+", help="Latent spaces to train phi in (comma-separated)."),
        method: str = typer.Option("gradient", help="Rank-one fit: gradient (P-III Eq. 10) or als (Eq. 4.13)."),
        metric: str = typer.Option("orthographic", help="Metric upgrade of the rigid split: orthographic, scaled or "
                                                        "none (P-III's raw SVD split)."),
        nrsfm_steps: int = option(2000, POSITIVE_INT, "--nrsfm-steps", help="Adam steps of the gradient fit (Eq. 10)."),
        lr: float = option(1e-3, POSITIVE, help="Learning rate of phi."),
        seed: int = option(0, NON_NEGATIVE_INT, help="Random seed of the sampled faces and of phi.")):
    """Fit the NRSfM on generated landmarks (the evaluator's head) and phi in each latent space."""
    import mien
    from mien.control.nrsfm.gan import NRSfMControl
    from mien.evaluator import evaluator_for

    model = mien.load(run).eval()
    evaluator = evaluator_for(model.config.image_size).eval()
    control = NRSfMControl(bases, [s.strip() for s in spaces.split(",")], n, steps, lr=lr, method=method,
                           metric=metric, nrsfm_steps=nrsfm_steps, seed=seed).fit(model, evaluator)
    control.save(out, {"checkpoint": str(Path(run).resolve())})
    losses = ", ".join(f"{s} {phi.train_loss_:.3g}" for s, phi in control.regressors_.items())
    typer.echo(f"NRSfM: {n} faces, K={bases}, reprojection RMS {control.nrsfm_.reprojection_error_:.4g}; "
               f"phi landmark loss (Eq. 12): {losses}")
    typer.echo(f"written to {out}")


@app.command("edit")
def edit(model_dir: Path = typer.Argument(..., help="Folder written by mien control nrsfm fit."),
         yaw: float = option(20.0, FINITE, help="Yaw change in degrees (positive turns the face to image right)."),
         pitch: float = option(0.0, FINITE, help="Pitch change in degrees."),
         roll: float = option(0.0, FINITE, help="Roll change in degrees."),
         image: Path = typer.Option(None, help="Photo to edit (inverted into --space; instead of --index)."),
         align: bool = typer.Option(True, "--align/--no-align", help="Detect and align the face of --image."),
         start: str = typer.Option("phi", help="q0 of a photo: phi (of its inverted code, as P-III reuses the "
                                   "regressor) or landmarks (Eq. 11 fit to its detected landmarks; needs --align)."),
         index: int = option(0, NON_NEGATIVE_INT, help="Generated face to edit (of the --seed sample)."),
         space: str = typer.Option("w", help="Latent space to edit in: z, w or w+."),
         editor: str = typer.Option("gradient", help="linear (Eq. 14, J^+) or gradient (Eq. 15, identity term)."),
         columns: int = option(5, POSITIVE_INT, help="Edits from -angle to +angle."),
         lam: float = option(0.01, NON_NEGATIVE, help="Weight of the identity term of the gradient editor."),
         steps: int = option(100, POSITIVE_INT, help="Adam steps of the gradient editor."),
         ckpt: Path = typer.Option(None, "--ckpt", help="The GAN (default: the one the model was fitted on)."),
         seed: int = option(0, NON_NEGATIVE_INT, help="Seed of the generated faces and noise."),
         out: Path = output(Path("nrsfm-edit.png"), help="PNG grid: the face, then the edits.", folder=False)):
    """Turn a generated face or a photo through phi; labels: target yaw / the evaluator's yaw change."""
    import mien
    from mien.control.nrsfm.gan import NRSfMControl, face_code, pose_sweep
    from mien.evaluator import evaluator_for
    from mien.report.grid import save_grid

    control = NRSfMControl.load(model_dir)
    model = mien.load(ckpt or control.info_["checkpoint"]).eval()
    control.check(model)
    evaluator = evaluator_for(model.config.image_size).eval()
    code, noise, landmarks = face_code(model, space, index, seed, image, align)
    if start not in ("phi", "landmarks") or (start == "landmarks" and landmarks is None):
        raise ConfigError(f"--start {start!r} needs one of phi, landmarks; landmarks needs --image with --align")
    landmarks = landmarks if start == "landmarks" else None
    images, labels = pose_sweep(control, model, evaluator, space, code, noise, yaw, pitch, roll, columns, editor,
                                lam, steps, landmarks)
    save_grid(images, out, nrow=len(images), scale=3, labels=labels)
    typer.echo(" ".join(labels))
    typer.echo(f"written to {out}")
