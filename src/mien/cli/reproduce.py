"""`mien reproduce zou-ch3`: the tables of Zou thesis ch. 3 on the world, at a chosen preset."""

from __future__ import annotations

from pathlib import Path

import typer

from mien.cli.options import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, Range, option, output

app = typer.Typer(help="Reproduce the tables of a source document on the world.", no_args_is_help=True)


@app.command("zou-ch3")
def zou_ch3(
    preset: str = typer.Option("small", help="tiny, small or paper (the shipped expr4d/<preset>)."),
    config: Path = typer.Option(None, help="A config file instead of the preset."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides for every run, e.g. train.max_steps=100."),
    out: Path = output(Path("out/zou-ch3"), folder=True, help="Output folder (runs/, animations/, zou-ch3.md)."),
    n: int = option(110, POSITIVE_INT, "-n", help="Test sequences (and generated sequences per row)."),
    frames: int = option(40, POSITIVE_INT, help="Sequence length of the evaluation."),
    seed: int = option(0, NON_NEGATIVE_INT, help="Random seed of the evaluation."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the training progress bars."),
):
    """Train (or reuse) BiT, causal transformer, 1-D U-Net and ACTOR-style runs; write Tabs. 3.1, 3.3, 3.6."""
    from mien.config import preset_path
    from mien.experiments.zou_ch3 import reproduce

    path = reproduce(config or preset_path("expr4d", preset), out, list(overrides or []), n, frames, seed,
                     progress)
    typer.echo(path.read_text())
    typer.echo(f"written to {path}")


@app.command("zou-ch3-mesh")
def zou_ch3_mesh(
    preset: str = typer.Option("small", help="tiny, small or paper (the shipped meshdecoder/<preset>)."),
    config: Path = typer.Option(None, help="A config file instead of the preset."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides for every run, e.g. train.max_steps=100."),
    out: Path = output(Path("out/zou-ch3-mesh"), folder=True, help="Output folder (runs/, heatmaps/, zou-ch3-mesh.md)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the training progress bars."),
):
    """Train (or reuse) Z2 and its Linear, CoMA and S2D baselines on two splits; write Tab. 3.5 and heat maps."""
    from mien.config import preset_path
    from mien.experiments.zou_ch3_mesh import reproduce

    path = reproduce(config or preset_path("meshdecoder", preset), out, list(overrides or []), progress)
    typer.echo(path.read_text())
    typer.echo(f"written to {path}")


@app.command("zou-ch4")
def zou_ch4(
    preset: str = typer.Option("small", help="tiny, small or paper (the shipped dvae/<preset>)."),
    config: Path = typer.Option(None, help="A config file instead of the preset."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides for every run, e.g. train.max_steps=100."),
    out: Path = output(Path("out/zou-ch4"), folder=True, help="Output folder (runs/, zou-ch4.md, fig4_6.png)."),
    folds: int = option(5, Range(int, 2), help="Outer stratified folds (at least 2)."),
    alphas: str = typer.Option("1,2", help="The inner grid's alpha values, comma-separated (thesis: 0.5,1,2,3,4,5)."),
    sqrt_vs: str = typer.Option("1.6,1.9", help="The inner grid's sqrt(v) values (thesis: 0.7,1,1.3,1.6,1.9)."),
    seed: int = option(0, NON_NEGATIVE_INT, help="Seed of the folds."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the training progress bars."),
    jobs: int = option(1, POSITIVE_INT, help="Folds run at a time, each in its own process (e.g. 2 on 2 cores)."),
):
    """Nested CV of the DVAE, its sigma-VAE baseline and the classifiers C, C_recon: Tab. 4.1, Fig. 4.6, saliency."""
    from mien.config import preset_path
    from mien.experiments.zou_ch4 import reproduce

    grid = ([NON_NEGATIVE.parse(a, "--alphas") for a in alphas.split(",")],
            [POSITIVE.parse(v, "--sqrt-vs") for v in sqrt_vs.split(",")])
    path = reproduce(config or preset_path("dvae", preset), out, list(overrides or []), folds, *grid, seed, progress, jobs)
    typer.echo(path.read_text())
    typer.echo(f"written to {path}")
def _label_tables(name: str):
    """The verb of a table of the label models (``zou-ch5``, ``zou-ch6``): the same options for both."""

    def command(
        preset: str = typer.Option("small", help="tiny (seconds, tests) or small: the presets of every row."),
        overrides: list[str] = typer.Argument(None, help="key=value overrides for every run, e.g. train.max_steps=100."),
        out: Path = output(Path(f"out/{name}"), folder=True, help=f"Output folder (runs/, grids/, {name}.md)."),
        n: int = option(1000, POSITIVE_INT, "-n", help="Unseen test faces scored per row."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the training progress bars."),
        jobs: int = option(1, POSITIVE_INT, help="Rows trained at a time, each in its own process (e.g. 2 on 2 cores)."),
    ):
        from importlib import import_module

        path = import_module(f"mien.experiments.{name.replace('-', '_')}").reproduce(
            preset, out, list(overrides or []), n, progress, jobs)
        typer.echo(path.read_text())
        typer.echo(f"written to {path}")

    return command


app.command("zou-ch5", help="Train (or reuse) CCVAE, CCVAE2, M2, PA1, PA2 and the two ablations of Zou ch. 5; "
                            "write Tab. 5.1 with exact-swap distances.")(_label_tables("zou-ch5"))
app.command("zou-ch6", help="Train (or reuse) the rows of Zou Tab. 6.1, 6.2 and a reduced Tab. 6.4-6.7 sweep "
                            "whose presets are shipped; write them with exact-swap distances.")(_label_tables("zou-ch6"))


@app.command("gan-directions")
def gan_directions(
    ckpt: Path = typer.Option(None, "--ckpt", help="GAN checkpoint folder (default: the zoo GAN)."),
    preset: str = typer.Option("small", help="tiny (seconds, tests) or small."),
    out: Path = output(Path("out/gan-directions"), help="Output folder (the .md table, results.json, grids/).", folder=True),
    seed: int = option(0, NON_NEGATIVE_INT, help="Random seed."),
    layers: str = typer.Option(None, help="W+ layers every direction moves, e.g. 0-3 (default: all)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
):
    """InterFaceGAN, GANSpace and SeFa directions scored by the evaluator and against the world's re-renders."""
    from mien.experiments.gan_directions import reproduce

    path = reproduce(ckpt, out, preset, seed, progress, layers)
    typer.echo(path.read_text())
    typer.echo(f"written to {path}")


@app.command("haas-nrsfm")
def haas_nrsfm(
    ckpt: Path = typer.Option(None, "--ckpt", help="GAN checkpoint folder (default: the zoo GAN)."),
    preset: str = typer.Option("small", help="tiny (seconds, tests) or small."),
    out: Path = output(Path("out/haas-nrsfm"), help="Output folder (haas-nrsfm.md, results.json, nrsfm/, grids/).",
                       folder=True),
    seed: int = option(0, NON_NEGATIVE_INT, help="Random seed."),
):
    """Haas P-III Table 1 for Z, W, W+; NRSfM rotations against the world; NRSfM yaw vs InterFaceGAN and GANSpace."""
    from mien.experiments.haas_nrsfm import reproduce

    path = reproduce(ckpt, out, preset, seed)
    typer.echo(path.read_text())
    typer.echo(f"written to {path}")


@app.command("haas-tensor")
def haas_tensor(
    ckpt: Path = typer.Option(None, "--ckpt", help="GAN checkpoint folder (default: the zoo GAN)."),
    preset: str = typer.Option("small", help="tiny (seconds, tests) or small."),
    out: Path = output(Path("out/haas-tensor"), help="Output folder (haas-tensor.md, results.json, grids/, cache/).",
                       folder=True),
    seed: int = option(0, NON_NEGATIVE_INT, help="Random seed (world grid identities, sampled latents)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the inversion progress bar."),
):
    """Haas P-II Tables 1-2, P-I transfer errors, the expression-classifier check and planted recovery."""
    from mien.experiments.haas_tensor import reproduce

    path = reproduce(ckpt, out, preset, seed, progress)
    typer.echo(path.read_text())
    typer.echo(f"written to {path}")
