"""`mien control tensor`: the multilinear (HOSVD) model of a GAN's W+ codes (Haas Papers I-II):
``fit RUN --out model/`` on the world grid of GAN checkpoint RUN, ``transfer MODEL`` of every
expression cell and view onto one face (a world face index or an image file) as a PNG grid."""

from __future__ import annotations

from pathlib import Path

import typer

from mien.cli.options import FINITE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_INT, Range, option, output

app = typer.Typer(help="Tensor (HOSVD) model of a GAN's W+ codes: fit on the world grid, transfer.", no_args_is_help=True)


def _floats(text: str, name: str) -> tuple[float, ...]:
    import math

    from mien.errors import ConfigError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) < 1 or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{name} {text!r}: give comma-separated finite numbers, e.g. -20,20")
    return values


@app.command("fit")
def fit(
    run: Path = typer.Argument(..., help="StyleGAN checkpoint folder (its world grid is rendered and inverted)."),
    out: Path = output(Path("tensor-model"), folder=True, help="Folder for model.safetensors + model.json (and grid/)."),
    persons: int = option(10, POSITIVE_INT, help="World identities of the grid."),
    layout: str = typer.Option("p1", help="p1 (neutral + emotions x intensities in one mode) or p2 (neutral dropped)."),
    emotions: str = typer.Option("happy,sad,surprise,fear,disgust,anger", help="Emotions of the grid."),
    intensities: str = typer.Option("0.25,0.5,0.75,1", help="Intensity levels of the grid."),
    views: str = typer.Option("-20,20", help="Yaw views (degrees) of the grid."),
    steps: int = option(150, POSITIVE_INT, help="Optimisation steps of each face's W+ inversion."),
    codes: Path = typer.Option(None, help="A W+ inversion folder (codes.safetensors + codes.json) of this grid "
                                          "instead of inverting; NaN codes are missing cells."),
    encoder: Path = typer.Option(None, help="A pSp/e4e run (`mien train psp/...`) whose codes start each inversion."),
    fill_missing: bool = typer.Option(False, "--impute/--no-impute", help="Fill missing cells by masked HOOI."),
    per_style: bool = typer.Option(True, "--per-style/--single", help="One model per W+ style (P-I) or one in all."),
    normalise: str = typer.Option("standardise", help="standardise (P-I) or centre (P-II)."),
    ridge: float = option(1.0, NON_NEGATIVE, help="Ridge weight of the estimator."),
    sum_to_one: float = option(1.0, NON_NEGATIVE, "--sum-to-one", help="Sum-to-one weight of the estimator."),
    lasso: float = option(0.0, NON_NEGATIVE, help="Lasso weight (ISTA) of the estimator."),
    seed: int = option(0, NON_NEGATIVE_INT, help="World seed of the grid's identities."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
):
    """Fit the tensor model of RUN's W+ codes on the crossed world grid and save it (never pickled)."""
    import mien
    from mien.control.tensor_edit import fit_on_grid
    from mien.control.tensor_grid import GridSpec
    from mien.experiments.gan_directions import _progress

    spec = GridSpec(persons=persons, layout=layout, emotions=tuple(e for e in emotions.split(",") if e),
                    intensities=_floats(intensities, "--intensities"), views=_floats(views, "--views"),
                    seed=seed, steps=steps)
    gan = mien.load(run)
    n = len(spec.dataset(gan.config.image_size))
    with _progress(progress and codes is None, -(-n // spec.batch)) as advance:
        model, folder = fit_on_grid(gan, run, spec, out, codes, fill_missing, per_style, on_batch=advance,
                                    encoder=encoder, normalise=normalise, ridge=ridge, sum_to_one=sum_to_one, lasso=lasso)
    sizes = " x ".join(str(u.shape[0]) for u in model.models_[0].factors_)
    typer.echo(f"wrote {folder} ({len(model.models_)} model(s), modes {', '.join(model.modes_)}: {sizes})")


@app.command("transfer")
def transfer(
    model: Path = typer.Argument(..., help="Folder written by `mien control tensor fit`."),
    face: int = option(None, NON_NEGATIVE_INT, help="Index of a world face of the GAN's world (unseen seed)."),
    image: Path = typer.Option(None, help="An image file of a face instead of --face."),
    ckpt: Path = typer.Option(None, help="The GAN checkpoint (default: the one the model was fitted on)."),
    steps: int = option(150, POSITIVE_INT, help="Optimisation steps of the face's W+ inversion."),
    gamma: float = option(1.0, FINITE, help="Rotation strength gamma (1 maps one view level to the next)."),
    intensity_level: int = option(-1, Range(int), "--intensity-level", help="Intensity level of a p2 model (-1: strongest)."),
    seed: int = option(0, NON_NEGATIVE_INT, help="Seed of the inversion and of the noise maps."),
    out: Path = output(Path("transfer.png"), help="The PNG grid (input, code, each expression level, each view)."),
):
    """Expression and rotation transfer (Haas P-I §IV-F-G) onto one face, as a PNG grid."""
    from mien.control.tensor_edit import transfer_face
    from mien.report.grid import save_grid

    images, labels = transfer_face(model, ckpt, face, image, steps, gamma, intensity_level, seed)
    typer.echo(f"wrote {save_grid(images, out, nrow=min(8, len(images)), scale=3, labels=labels)}")
