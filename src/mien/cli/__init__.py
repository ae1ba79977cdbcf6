"""The ``mien`` command line: one typer sub-app per verb group; no logic beyond parsing and printing."""

from __future__ import annotations

import sys

import typer
import typer.main

from mien import __version__
from mien.cli import (control, convert, data, demo, directions, eval, evaluator, expr4d, inspect, invert, reproduce, swap,
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
app.add_typer(control.app, name="control")
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


def _usage_errors() -> tuple[type, ...]:
    """Usage-error classes: typer's bundled click (typer >= 0.29) and click itself, where installed."""
    from typer._click.exceptions import ClickException

    try:
        import click
    except ImportError:
        return (ClickException,)
    return (ClickException, click.ClickException)


def _aborts() -> tuple[type, ...]:
    try:
        import click
    except ImportError:
        return (typer.Abort, KeyboardInterrupt)
    return (typer.Abort, click.Abort, KeyboardInterrupt)


def _command(args: list[str]):
    """The click command that ``args`` name (the deepest sub-command found), or None."""
    command = typer.main.get_command(app)
    for word in args:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        command = sub
    return command


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _usage(error, args: list[str]) -> int:
    """A usage error as one line naming the verb's --help (the no-arguments case prints the help)."""
    from typer._click.exceptions import NoArgsIsHelpError

    if isinstance(error, NoArgsIsHelpError):
        error.show()
        return 2
    ctx = getattr(error, "ctx", None)
    path = ctx.command_path if ctx is not None else "mien"
    message = error.format_message().replace("Value error, ", "")
    return _fail(f"{message} (see '{path} --help')")


def _interrupted(args: list[str]) -> int:
    command = _command(args)
    resumable = any("--resume" in getattr(p, "opts", ()) for p in getattr(command, "params", []))
    then = "resume with --resume" if resumable else "run the command again for the rest"
    print(f"interrupted; finished outputs are kept; {then}", file=sys.stderr)
    return 130


def _os_error(error: OSError) -> str:
    where = f" {error.filename}" if error.filename else ""
    return f"cannot use{where}: {error.strerror or error}; check the path, its permissions and the free space"


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: the command line) and return the exit code. The one
    place where errors become one line on stderr and exit code 2, for every verb: a MienError, a
    usage error, an OSError; Ctrl-C (also inside Lightning) says what is kept and exits 130."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="mien", standalone_mode=False)
    except MienError as e:
        return _fail(str(e))
    except _usage_errors() as e:
        return _usage(e, args)
    except _aborts():
        return _interrupted(args)
    except OSError as e:
        return _fail(_os_error(e))
    if code == 130:  # typer turns KeyboardInterrupt into Exit(130), returned in non-standalone mode
        return _interrupted(args)
    return code if isinstance(code, int) else 0


def main() -> None:
    """Entry point: user errors print one line and exit with code 2, never a traceback."""
    sys.exit(run())
