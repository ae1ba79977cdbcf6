"""Validated number options of every verb: one :class:`mien.config.Range` per option.

Declare a number option as ``n: int = option(64, POSITIVE_INT, help=...)`` (the names of the
ranges are re-exported here), and an output path as ``out: Path = output(Path("x.png"), help=...)``
(``folder=True`` for a folder). A value out of range, NaN, inf or not a number, or an output that
cannot be written, is a one-line error (exit 2) before the verb starts any work.
``tests/test_cli_errors.py`` refuses a verb whose int or float option has no range or whose
``out`` option is not declared with :func:`output`.
"""

from __future__ import annotations

from typing import Any

import typer

from mien.config import (FINITE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, PROBABILITY, UNIT_OPEN,
                         Range)
from mien.errors import ConfigError
from mien.io import check_output_path

__all__ = ["option", "output", "Number", "Range", "FINITE", "NON_NEGATIVE", "NON_NEGATIVE_INT", "POSITIVE", "POSITIVE_INT",
           "PROBABILITY", "UNIT_OPEN"]


class Number:
    """A typer ``parser`` reading one number of a :class:`Range` (None, for an unset option, passes)."""

    def __init__(self, range_: Range):
        self.range = range_

    def __call__(self, value: Any):
        if value is None:
            return None
        try:
            return self.range.parse(value, "value")
        except ConfigError:
            raise ValueError(f"must be {self.range.describe()}, got {value!r}") from None


def option(default: Any, range_: Range, *decls: str, **kwargs) -> Any:
    """``typer.Option(default, *decls, **kwargs)`` whose value must lie in ``range_``."""
    return typer.Option(default, *decls, parser=Number(range_), **kwargs)


def output(default: Any, *decls: str, folder: bool | None = False, **kwargs) -> Any:
    """``typer.Option(default, *decls, **kwargs)`` for an output file (``folder=False``), folder
    (True) or either (None), refused at parse time when it cannot be written
    (:func:`mien.io.check_output_path`). The check carries ``output_folder`` (tests find it)."""

    def check(value):
        return None if value is None else check_output_path(value, folder)

    check.output_folder = folder
    return typer.Option(default, *decls, callback=check, **kwargs)
