"""The ``mien`` command line: one typer sub-app per verb group; no logic beyond parsing and printing."""

from __future__ import annotations

import sys

import typer

from mien import __version__
from mien.cli import (convert, data, demo, directions, eval, evaluator, expr4d, inspect, invert, reproduce, swap,
                      train, zoo)
from mien.errors import MienError

app = typer.Typer(name="mien", help="Controllable deep generative models of faces and facial expressions.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(data.app, name="data")
app.add_typer(convert.app, name="convert")
app.add_typer(eval.app, name="eval")
app.add_typer(evaluator.app, name="evaluator")
app.add_typer(zoo.app, name="zoo")
app.add_typer(expr4d.app, name="expr4d")
app.add_typer(reproduce.app, name="reproduce")
app.add_typer(directions.app, name="directions")
app.command("demo")(demo.demo)
app.command("train")(train.train)
app.command("invert")(invert.invert)
app.command("swap")(swap.swap)
for verb in (inspect.sample, inspect.reconstruct, inspect.traverse, inspect.interpolate, directions.edit):
    app.command(verb.__name__)(verb)


def _version(value: bool):
    if value:
        typer.echo(f"mien {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    """Controllable deep generative models of faces and facial expressions."""


def main() -> None:
    """Entry point: user errors print one line and exit with code 2, never a traceback."""
    try:
        app(standalone_mode=False)
    except MienError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; finished outputs are kept", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(2)
        raise
