"""The factor schema every data set that knows its generative factors exposes (design.md, Contracts).

A :class:`Factor` names one generative factor, says whether it is categorical, binary or
continuous, and gives its value labels or its range. Disentanglement metrics, tensor models and
reports read this schema; nothing outside ``mien.data.world`` hard-codes factor names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Sequence

from mien.errors import DataError

Kind = Literal["categorical", "binary", "continuous"]
KINDS = ("categorical", "binary", "continuous")


@dataclass(frozen=True)
class Factor:
    """One generative factor: ``values`` for categorical/binary kinds, ``range`` for continuous."""

    name: str
    kind: Kind
    values: tuple[str, ...] | None = None
    range: tuple[float, float] | None = None
    group: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DataError(f"factor {self.name!r} has kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.kind == "continuous":
            if self.range is None or len(self.range) != 2 or not self.range[0] < self.range[1]:
                raise DataError(f"continuous factor {self.name!r} needs a range (low, high) with low < high")
        else:
            if not self.values or len(self.values) < 2:
                raise DataError(f"{self.kind} factor {self.name!r} needs at least two values")
            if self.kind == "binary" and len(self.values) != 2:
                raise DataError(f"binary factor {self.name!r} needs exactly two values")

    @property
    def discrete(self) -> bool:
        return self.kind != "continuous"

    @property
    def cardinality(self) -> int | None:
        """Number of values of a discrete factor, None for a continuous one."""
        return len(self.values) if self.values else None

    def index(self, value) -> int:
        """The integer code of a discrete value given as its label or its code."""
        if isinstance(value, str) and value in self.values:
            return self.values.index(value)
        try:
            code = int(float(value))
        except (TypeError, ValueError):
            code = -1
        if not 0 <= code < len(self.values):
            raise DataError(
                f"factor {self.name!r} has no value {value!r}; expected one of {', '.join(self.values)} "
                f"or a code 0..{len(self.values) - 1}"
            )
        return code

    def to_dict(self) -> dict:
        out = {"name": self.name, "kind": self.kind}
        if self.values is not None:
            out["values"] = list(self.values)
        if self.range is not None:
            out["range"] = [float(self.range[0]), float(self.range[1])]
        if self.group:
            out["group"] = self.group
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Factor":
        try:
            return cls(
                name=str(d["name"]),
                kind=d["kind"],
                values=tuple(d["values"]) if d.get("values") is not None else None,
                range=tuple(float(v) for v in d["range"]) if d.get("range") is not None else None,
                group=d.get("group", ""),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"bad factor entry {d!r} ({e}); each needs name, kind and values or range") from None


def schema_to_json(factors: Sequence[Factor]) -> str:
    return json.dumps([f.to_dict() for f in factors], indent=2)


def schema_from_json(text: str, source: str = "factors.json") -> list[Factor]:
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{source} is not valid JSON ({e.msg} at line {e.lineno}); re-export the data set") from None
    if not isinstance(entries, list):
        raise DataError(f"{source} must hold a list of factors; re-export the data set")
    return [Factor.from_dict(d) for d in entries]


def by_name(factors: Sequence[Factor]) -> dict[str, Factor]:
    return {f.name: f for f in factors}
