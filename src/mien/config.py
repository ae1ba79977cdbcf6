"""One config system for everything (design.md, Configs): typed dataclasses, YAML presets and
``key=value`` overrides. Unknown keys and ill-typed values are errors that name the key and list
the valid ones."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Annotated

import yaml

from mien.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Range:
    """One validated number type: integers or finite floats within [low, high] (an open end with
    ``low_open``/``high_open``). Config fields take it as ``Annotated[int, POSITIVE_INT]`` (or the
    aliases below) and the CLI options through ``mien.cli.options.option``; both read every
    spelling a user types (``1e-4``, ``.5``, ``3``) and refuse NaN, inf and values out of range."""

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        """E.g. 'an integer >= 1' or 'a finite number in [0, 1)'."""
        what = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            return f"{what} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{what} {'<' if self.high_open else '<='} {self.high:g}"
        return what

    def parse(self, value, key: str):
        """``value`` (a number or its text) as ``kind`` within the range, or a ConfigError naming ``key``."""
        bad = ConfigError(f"{key} must be {self.describe()}, got {value!r}")
        number = _number(value, self.kind)
        if number is None or not math.isfinite(number):
            raise bad
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            raise bad
        if self.high is not None and (number > self.high or (self.high_open and number == self.high)):
            raise bad
        return number


def _number(value, kind: type):
    """``value`` as an int or a float (texts parsed as Python reads numbers), or None if it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip()) if kind is float else int(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    if kind is int:
        return int(value) if math.isfinite(value) and float(value) == int(value) else None
    return float(value)


POSITIVE_INT = Range(int, 1)
NON_NEGATIVE_INT = Range(int, 0)
FINITE = Range(float)
POSITIVE = Range(float, 0, low_open=True)
NON_NEGATIVE = Range(float, 0)
PROBABILITY = Range(float, 0, 1)
UNIT_OPEN = Range(float, 0, 1, high_open=True)  # [0, 1): Adam's betas, decay rates

PositiveInt = Annotated[int, POSITIVE_INT]
NonNegativeInt = Annotated[int, NON_NEGATIVE_INT]
Finite = Annotated[float, FINITE]
Positive = Annotated[float, POSITIVE]
NonNegative = Annotated[float, NON_NEGATIVE]
Probability = Annotated[float, PROBABILITY]
UnitOpen = Annotated[float, UNIT_OPEN]


PRESETS = Path(__file__).resolve().parent / "configs"  # shipped in the package (design.md, Layout)


def preset_path(family: str, preset: str) -> Path:
    """The shipped preset ``configs/<family>/<preset>.yaml`` (``zoo/<name>``: a zoo recipe)."""
    path = PRESETS / family / f"{preset}.yaml"
    if not path.is_file():
        known = sorted(f"{p.parent.name}/{p.stem}" for p in PRESETS.glob("*/*.yaml"))
        raise ConfigError(f"no preset {family}/{preset}; choose one of {', '.join(known)}")
    return path


def resolve_config(config) -> Path:
    """A YAML file, or a preset name such as ``vae/tiny`` when no such file exists."""
    path = Path(config)
    name = str(config)
    if not path.exists() and path.suffix == "" and name.count("/") == 1:
        return preset_path(*name.split("/"))
    return path


def load_yaml(path) -> dict:
    path = resolve_config(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a YAML file or a preset name such as vae/tiny")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(f"{path} is not a text file; pass a YAML config") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path} ({e.strerror or e}); check the path and its permissions") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (model:, data:, train:)")
    return data


def parse_overrides(items: list[str]) -> dict:
    """``["model.beta=4", "train.max_steps=10"]`` -> nested dict; values are parsed as YAML."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. train.max_steps=100")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value != "" else None
        except yaml.YAMLError:
            parsed = value
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {p!r}")
        node[parts[-1]] = parsed
    return out


def merge(base: dict, over: dict) -> dict:
    """Recursive dict merge: values of ``over`` win."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def from_dict(cls, data: dict | None, where: str = ""):
    """Build dataclass ``cls`` from a dict, recursing into dataclass fields and checking types."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key {where}{unknown[0]} for {cls.__name__}; valid keys: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(hints[k], v, f"{where}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad {where.rstrip('.') or cls.__name__} config: {e}") from None


def _not_a_number(key: str, value):
    raise ConfigError(f"{key} must be a number, got {value!r}")


def _coerce(tp, value, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        ranges = [a for a in tp.__metadata__ if isinstance(a, Range)]
        if ranges and value is not None:
            return ranges[0].parse(value, key)
        return _coerce(args[0], value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping")
        return from_dict(tp, value, f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        inner = args[0] if args else typing.Any
        items = [_coerce(inner, v, key) for v in value] if inner is not Ellipsis else list(value)
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is typing.Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is float:  # every float of a config is finite; '1e-4' (a string to YAML 1.1) is a float
        return FINITE.parse(value, key) if _number(value, float) is not None else _not_a_number(key, value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return Range(int).parse(value, key)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value
