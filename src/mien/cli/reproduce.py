"""`mien reproduce zou-ch3`: the tables of Zou thesis ch. 3 on the world, at a chosen preset."""

from __future__ import annotations

from pathlib import Path

import typer

from mien.cli.options import NON_NEGATIVE_INT, POSITIVE_INT, option, output

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


def _label_tables(name: str):
    """The verb of a table of the label models (``zou-ch5``, ``zou-ch6``): the same options for both."""

    def command(
        preset: str = typer.Option("small", help="tiny (seconds, tests) or small: the presets of every row."),
        overrides: list[str] = typer.Argument(None, help="key=value overrides for every run, e.g. train.max_steps=100."),
        out: Path = output(Path(f"out/{name}"), folder=True, help=f"Output folder (runs/, grids/, {name}.md)."),
        n: int = option(1000, POSITIVE_INT, "-n", help="Unseen test faces scored per row."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the training progress bars."),
    ):
        from importlib import import_module

        path = import_module(f"mien.experiments.{name.replace('-', '_')}").reproduce(
            preset, out, list(overrides or []), n, progress)
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
