"""Validated number options of every verb: one :class:`mien.config.Range` per option.

Declare a number option as ``n: int = option(64, POSITIVE_INT, help=...)`` (the names of the
ranges are re-exported here). A value out of range, NaN, inf or not a number is a usage error
(one line, exit 2) before the verb starts any work. ``tests/test_cli_errors.py`` refuses a verb
whose int or float option is declared without a range.
"""

from __future__ import annotations

from typing import Any

import typer

from mien.config import (FINITE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, PROBABILITY, UNIT_OPEN,
                         Range)
from mien.errors import ConfigError

__all__ = ["option", "Number", "Range", "FINITE", "NON_NEGATIVE", "NON_NEGATIVE_INT", "POSITIVE", "POSITIVE_INT",
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
