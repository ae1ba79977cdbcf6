"""The world's generative factors: the schema, their marginals, and the sampling designs.

Every draw is a pure function of (seed, index): a counter-based hash (splitmix64) gives the
uniform variates, so item i of a data set is the same whatever batch or worker renders it.
Designs: i.i.d. (optionally from a finite pool of identities), the full factorial design
identities x expressions x intensities x views (BU-3DFE shaped, for tensor models), and
correlated sampling through a Gaussian copula (for disentanglement studies).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mien.data.factors import Factor
from mien.data.world.geometry import EXPRESSIONS, SHAPE_MODES
from mien.errors import ConfigError, DataError

HAIR_STYLES = ("short", "long", "fringe", "bald")
EYE_COLOURS = ("brown", "blue", "green", "grey")
GLASSES_SHAPES = ("round", "square")

# name -> (Factor, marginal): marginal is ("uniform",), ("normal", clip), ("bernoulli", p) or ("categorical",)
_SPECS: list[tuple[Factor, tuple]] = (
    [(Factor(f"shape_{m}", "continuous", range=(-2.5, 2.5), group="identity"), ("normal", 2.5)) for m in SHAPE_MODES]
    + [
        (Factor("sex", "binary", values=("female", "male"), group="identity"), ("bernoulli", 0.5)),
        (Factor("age", "continuous", range=(0.0, 1.0), group="identity"), ("uniform",)),
        (Factor("skin_tone", "continuous", range=(0.0, 1.0), group="identity"), ("uniform",)),
        (Factor("hair_colour", "continuous", range=(0.0, 1.0), group="identity"), ("uniform",)),
        (Factor("hair_style", "categorical", values=HAIR_STYLES, group="identity"), ("categorical",)),
        (Factor("eye_colour", "categorical", values=EYE_COLOURS, group="identity"), ("categorical",)),
        (Factor("background_hue", "continuous", range=(0.0, 1.0), group="scene"), ("uniform",)),
        (Factor("light_azimuth", "continuous", range=(-1.0, 1.0), group="scene"), ("uniform",)),
        (Factor("glasses", "binary", values=("no", "yes"), group="attribute"), ("bernoulli", 0.3)),
        (Factor("glasses_shape", "categorical", values=GLASSES_SHAPES, group="attribute"), ("categorical",)),
        (Factor("glasses_size", "continuous", range=(0.0, 1.0), group="attribute"), ("uniform",)),
        (Factor("glasses_colour", "continuous", range=(0.0, 1.0), group="attribute"), ("uniform",)),
        (Factor("glasses_thickness", "continuous", range=(0.0, 1.0), group="attribute"), ("uniform",)),
        (Factor("beard", "binary", values=("no", "yes"), group="attribute"), ("bernoulli", 0.3)),
        (Factor("beard_density", "continuous", range=(0.0, 1.0), group="attribute"), ("uniform",)),
        (Factor("beard_colour", "continuous", range=(0.0, 1.0), group="attribute"), ("uniform",)),
        (Factor("hat", "binary", values=("no", "yes"), group="attribute"), ("bernoulli", 0.3)),
        (Factor("hat_colour", "continuous", range=(0.0, 1.0), group="attribute"), ("uniform",)),
        (Factor("expression", "categorical", values=EXPRESSIONS, group="expression"), ("categorical",)),
        (Factor("intensity", "continuous", range=(0.0, 1.0), group="expression"), ("uniform",)),
        (Factor("yaw", "continuous", range=(-35.0, 35.0), group="pose"), ("uniform",)),
        (Factor("pitch", "continuous", range=(-15.0, 15.0), group="pose"), ("uniform",)),
        (Factor("roll", "continuous", range=(-12.0, 12.0), group="pose"), ("uniform",)),
        (Factor("tx", "continuous", range=(-0.04, 0.04), group="pose"), ("uniform",)),
        (Factor("ty", "continuous", range=(-0.04, 0.04), group="pose"), ("uniform",)),
        (Factor("scale", "continuous", range=(0.9, 1.1), group="pose"), ("uniform",)),
        # appended last: a factor's random stream is its position here, so earlier factors keep their draws
        (Factor("glasses_tint", "continuous", range=(0.0, 1.0), group="attribute"), ("uniform",)),
    ]
)
WORLD_FACTORS: list[Factor] = [f for f, _ in _SPECS]
_MARGINAL = {f.name: m for f, m in _SPECS}
_STREAM = {f.name: i for i, f in enumerate(WORLD_FACTORS)}
IDENTITY_FACTORS = tuple(f.name for f in WORLD_FACTORS if f.group == "identity")
NEUTRAL_VALUES = {"background_hue": 0.55, "light_azimuth": 0.3, "glasses": 0, "beard": 0, "hat": 0,
                  "yaw": 0.0, "pitch": 0.0, "roll": 0.0, "tx": 0.0, "ty": 0.0, "scale": 1.0}

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return x ^ (x >> np.uint64(31))


def uniforms(seed: int, index, stream: int) -> torch.Tensor:
    """U[0, 1) variates, a pure function of (seed, index, stream); index is an int array."""
    idx = np.asarray(index, dtype=np.int64).astype(np.uint64)
    key = _splitmix64(np.uint64(seed & 0xFFFFFFFF) * np.uint64(1 << 20) + np.uint64(stream))
    with np.errstate(over="ignore"):
        h = _splitmix64(idx ^ key) if idx.ndim else _splitmix64(np.array([idx ^ key]))
    return torch.from_numpy(((h >> np.uint64(11)).astype(np.float64) / float(1 << 53)).reshape(idx.shape))


def _apply_marginal(factor: Factor, u: torch.Tensor) -> torch.Tensor:
    m = _MARGINAL.get(factor.name, ("uniform",) if factor.kind == "continuous" else ("categorical",))
    if m[0] == "bernoulli":
        return (u > 1 - m[1]).long()
    if m[0] == "categorical" or factor.discrete:
        return (u * factor.cardinality).long().clamp_(max=factor.cardinality - 1)
    lo, hi = factor.range
    if m[0] == "normal":
        z = torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12))
        return z.clamp(lo, hi).float()
    return (lo + (hi - lo) * u).float()


def _index_for(name: str, index: np.ndarray, identity: np.ndarray | None) -> np.ndarray:
    """Identity factors are drawn per identity (in a separate index space) when identities repeat."""
    if identity is not None and name in IDENTITY_FACTORS:
        return identity + (1 << 40)
    return index


@dataclass
class Design:
    """Base of the sampling designs: restrictions shared by all of them.

    fixed: factor name -> value (label or number) held constant; ranges: continuous factor ->
    (low, high) narrowing its range; weights: discrete factor -> {value: probability} replacing
    its marginal (values not named share the rest equally), e.g. ``{expression: {happy: 0.5}}``
    for balanced smiles; n_identities: draw identity factors from a finite pool.
    """

    fixed: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    n_identities: int | None = None

    def factors(self) -> list[Factor]:
        known = {f.name: f for f in WORLD_FACTORS}
        for name in list(self.fixed) + list(self.ranges) + list(self.weights):
            if name not in known:
                raise ConfigError(f"unknown world factor {name!r}; known factors: {', '.join(known)}")
        for name, value in self.fixed.items():
            self.fixed_value(known[name], value)
        for name in self.weights:
            self.probabilities(known[name])
        out = []
        if self.n_identities is not None:
            out.append(Factor("identity", "categorical", values=tuple(str(i) for i in range(self.n_identities)),
                              group="identity"))
        for f in WORLD_FACTORS:
            if f.name in self.ranges:
                lo, hi = (float(v) for v in self.ranges[f.name])
                if f.discrete or not f.range[0] <= lo < hi <= f.range[1]:
                    raise ConfigError(f"range {lo, hi} for {f.name!r} must lie inside {f.range} with low < high")
                f = Factor(f.name, f.kind, range=(lo, hi), group=f.group)
            out.append(f)
        return out

    @property
    def size(self) -> int | None:
        """Number of distinct items of a finite design, None for an unbounded one."""
        return None

    def uniforms(self, seed: int, index: np.ndarray, names) -> dict[str, torch.Tensor]:
        ident = self.identity_of(index)
        return {n: uniforms(seed, _index_for(n, index, ident), _STREAM[n]) for n in names}

    def identity_of(self, index: np.ndarray) -> np.ndarray | None:
        if self.n_identities is None:
            return None
        return (uniforms(0x1D, index, 0).numpy() * self.n_identities).astype(np.int64)

    def draw(self, seed: int, index) -> dict[str, torch.Tensor]:
        """Factor values (name -> tensor of len(index)) of the given items."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        schema = self.factors()
        u = self.uniforms(seed, index, [f.name for f in schema if f.name != "identity"])
        out = {}
        for f in schema:
            if f.name == "identity":
                out["identity"] = torch.from_numpy(self.identity_of(index))
            elif f.name in self.weights:
                cdf = torch.cumsum(self.probabilities(f), 0)
                out[f.name] = torch.searchsorted(cdf, u[f.name].double(), right=True).clamp_(max=f.cardinality - 1)
            else:
                out[f.name] = _apply_marginal(f, u[f.name])
        self.apply_fixed(out, schema)
        return out

    def probabilities(self, factor: Factor) -> torch.Tensor:
        """The probability of each value of a discrete ``factor`` under ``weights`` (float64)."""
        given = self.weights[factor.name]
        if not factor.discrete or not isinstance(given, dict) or not given:
            raise ConfigError(f"weights for {factor.name!r} must map values of a discrete factor to probabilities, "
                              "e.g. weights: {expression: {happy: 0.5}}")
        p = torch.full((factor.cardinality,), float("nan"), dtype=torch.float64)
        for value, prob in given.items():
            try:
                p[factor.index(value)] = float(prob)
            except DataError as e:
                raise ConfigError(f"bad weight: {e}") from None
            except (TypeError, ValueError):
                raise ConfigError(f"weight {prob!r} of {factor.name}={value} is not a number") from None
        named = ~p.isnan()
        if not (p[named] >= 0).all() or p[named].sum() > 1 + 1e-9 or (named.all() and abs(p.sum() - 1) > 1e-6):
            raise ConfigError(f"weights of {factor.name!r} must be probabilities in [0, 1] summing to at most 1 "
                              "(to exactly 1 when every value is named)")
        if not named.all():
            p[~named] = (1 - p[named].sum()).clamp_min(0) / (~named).sum()
        return p

    @staticmethod
    def fixed_value(factor: Factor, value) -> float | int:
        try:
            return factor.index(value) if factor.discrete else float(value)
        except (DataError, TypeError, ValueError) as e:
            raise ConfigError(f"cannot fix {factor.name!r} to {value!r}: {e}") from None

    def apply_fixed(self, values: dict, schema: list[Factor]) -> None:
        known = {f.name: f for f in schema}
        for name, value in self.fixed.items():
            values[name] = torch.full_like(values[name], self.fixed_value(known[name], value))


@dataclass
class IID(Design):
    """Independent draws of every factor from its marginal."""


@dataclass
class Correlated(Design):
    """Factors coupled through a Gaussian copula: pairs (a, b) -> correlation of their normal scores.
    Marginals are unchanged; e.g. glasses become more frequent with age."""

    correlations: dict = field(default_factory=lambda: {("age", "glasses"): 0.6, ("sex", "beard"): 0.7,
                                                        ("age", "hair_colour"): 0.5})

    def uniforms(self, seed, index, names):
        u = super().uniforms(seed, index, names)
        names = list(names)
        pos = {n: i for i, n in enumerate(names)}
        corr = torch.eye(len(names), dtype=torch.float64)
        for pair, rho in self.correlations.items():
            a, b = pair.split(",") if isinstance(pair, str) else pair
            a, b = a.strip(), b.strip()
            if a not in pos or b not in pos:
                raise ConfigError(f"correlation names unknown factor in {pair!r}; known: {', '.join(names)}")
            corr[pos[a], pos[b]] = corr[pos[b], pos[a]] = float(rho)
        try:
            chol = torch.linalg.cholesky(corr)
        except RuntimeError:
            raise ConfigError("the factor correlations do not form a valid correlation matrix; lower them") from None
        z = torch.special.ndtri(torch.stack([u[n] for n in names], 1).clamp(1e-12, 1 - 1e-12))
        uc = torch.special.ndtr(z @ chol.T)
        return {n: uc[:, i] for i, n in enumerate(names)}


@dataclass
class Factorial(Design):
    """Full factorial design identities x expressions x intensities x views (BU-3DFE shaped by
    default: 100 identities, neutral + 6 emotions x 4 intensities, 2 yaw views). Neutral appears
    once per identity and view; scene factors take neutral values, attributes follow the identity."""

    n_identities: int = 100
    expressions: tuple = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
    intensities: tuple = (0.25, 0.5, 0.75, 1.0)
    views: tuple = (0.0, 30.0)

    def cells(self) -> list[tuple[str, float]]:
        """(expression, intensity) cells of one identity and view."""
        cells = []
        for e in self.expressions:
            if e not in EXPRESSIONS:
                raise ConfigError(f"unknown expression {e!r}; choose from {', '.join(EXPRESSIONS)}")
            cells += [(e, 0.0)] if e == "neutral" else [(e, float(i)) for i in self.intensities]
        return cells

    def grid_modes(self) -> list[tuple[str, int]]:
        """(factor name, levels) of the crossed modes in item order (the view varies fastest):
        identity, expression, intensity, yaw when every expression has every intensity (Haas P-II:
        neutral dropped); identity, expression (the cells, neutral one of them), yaw otherwise (P-I)."""
        emotions = [e for e in self.expressions if e != "neutral"]
        cells = ([("expression", len(emotions)), ("intensity", len(self.intensities))]
                 if len(emotions) == len(self.expressions) else [("expression", len(self.cells()))])
        return [("identity", self.n_identities), *cells, ("yaw", len(self.views))]

    @property
    def size(self) -> int:
        return self.n_identities * len(self.cells()) * len(self.views)

    def identity_of(self, index):
        return index // (len(self.cells()) * len(self.views))

    def uniforms(self, seed, index, names):
        ident = self.identity_of(index)
        return {n: uniforms(seed, ident + (1 << 40), _STREAM[n]) for n in names}  # everything per identity

    def draw(self, seed, index):
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if len(index) and (index.min() < 0 or index.max() >= self.size):
            raise ConfigError(f"factorial design has {self.size} cells; index out of range")
        out = super().draw(seed, index)
        cells, nv = self.cells(), len(self.views)
        cell = torch.from_numpy((index // nv) % len(cells))
        view = torch.from_numpy(index % nv)
        out["expression"] = torch.tensor([EXPRESSIONS.index(e) for e, _ in cells])[cell]
        out["intensity"] = torch.tensor([i for _, i in cells], dtype=torch.float32)[cell]
        out["yaw"] = torch.tensor(self.views, dtype=torch.float32)[view]
        for name, v in NEUTRAL_VALUES.items():
            if name not in ("glasses", "beard", "hat", "yaw") and name not in self.fixed:
                out[name] = torch.full_like(out[name], v)
        self.apply_fixed(out, self.factors())
        return out


DESIGNS = {"iid": IID, "factorial": Factorial, "correlated": Correlated}


def make_design(design: str | Design = "iid", **kwargs) -> Design:
    if isinstance(design, Design):
        return design
    if design not in DESIGNS:
        raise ConfigError(f"unknown design {design!r}; choose one of {', '.join(DESIGNS)}")
    try:
        return DESIGNS[design](**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad option for the {design} design: {e}") from None
