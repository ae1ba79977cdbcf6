"""`mien reproduce gan-directions` (experiment, issue 15 item 7): InterFaceGAN, GANSpace and SeFa
(Haas digest §1.4) on one GAN checkpoint, each direction scored against the world rather than by eye.

For every method and target factor (yaw, happy, age, glasses, hat, skin tone, light azimuth):

- the direction: InterFaceGAN fitted on generated faces scored by the evaluator (Shen et al.
  2020's recipe); for GANSpace and SeFa the component, among the first k, whose measured effect on
  the target is largest (its 0-based index is reported: the field's directions are published
  without one), signed so that + raises the target;
- M generated faces moved along it, strengths in sigma units (the standard deviation of sampled
  w along the direction), every factor measured by :class:`~mien.control.gan_directions.FactorMeter`:
  the target's slope per unit strength (in its own units, and divided by its spread over generated
  faces), the leakage (mean normalised |slope| of every other factor over the target's), and
  identity kept (csim_mien between the unedited face and the ends of the sweep);
- on world faces inverted into W+ (when mien has GAN inversion): the GAN edit against the world's
  exact re-render of the same face with the target changed by what the evaluator measures the edit
  to have done (lpips_mien and landmark NME of the evaluator's landmarks against the exact ones).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mien.control import gan_directions as gd
from mien.control.direction import Direction, check_space, shift
from mien.errors import ConfigError
from mien.io import atomic_write_text, ensure_writable_dir

TARGETS = ("yaw", "happy", "age", "glasses", "hat", "skin_tone", "light_azimuth")
MEASURED = ("yaw", "pitch", "roll", "intensity", "happy", "sex", "glasses", "beard", "hat", "age", "skin_tone",
            "light_azimuth")
SAME_FACTOR = {"happy": ("intensity",)}  # measured factors that are the target itself, not leakage
METHODS = ("interfacegan", "ganspace", "sefa")
RELIABLE_R2 = 0.5  # a probe below this held-out R^2 does not measure its factor


@dataclass
class Preset:
    """Sizes of a run: generated faces to fit on, components searched, faces moved, strengths."""

    n_fit: int
    k: int
    m: int
    steps: int
    span: float
    n_invert: int
    n_probe: int
    ratio: float


PRESETS = {"tiny": Preset(n_fit=200, k=3, m=4, steps=3, span=2.0, n_invert=2, n_probe=256, ratio=0.1),
           "small": Preset(n_fit=2000, k=10, m=32, steps=5, span=3.0, n_invert=16, n_probe=1536, ratio=0.02)}


def default_checkpoint() -> Path:
    """The zoo GAN, when it ships."""
    from mien import zoo

    if "stylegan" not in zoo.names():
        raise ConfigError("no zoo GAN ships yet; pass --ckpt RUN (e.g. one trained with mien train stylegan/small)")
    return zoo.path("stylegan")


class _Sweeper:
    """Moves fixed W+ codes (with fixed noise) along unit directions and measures every factor."""

    def __init__(self, model, meter, ws, noise, pool_w, alphas):
        self.model, self.meter, self.ws, self.noise, self.pool_w, self.alphas = model, meter, ws, noise, pool_w, alphas

    def unit(self, vector: torch.Tensor) -> float:
        """The std of sampled w along ``vector``: one unit of strength."""
        return float((self.pool_w @ (vector / vector.norm())).std())

    @torch.no_grad()
    def images(self, vector: torch.Tensor, layers, codes=None, noise=None, alphas=None) -> torch.Tensor:
        """(faces x strengths) images, face-major."""
        codes = self.ws if codes is None else codes
        noise = self.noise if noise is None else noise
        alphas = self.alphas if alphas is None else alphas
        v = vector / vector.norm() * self.unit(vector)
        d = Direction("w", v[None], layers=layers)
        moved = torch.stack([shift(codes, d, float(a)) for a in alphas], 1).flatten(0, 1)
        maps = [m.repeat_interleave(len(alphas), 0) for m in noise]
        return self.model.synthesize(moved, maps).clamp(-1, 1)

    def slopes(self, images: torch.Tensor) -> dict[str, float]:
        """Least-squares slope, per unit strength, of each measured factor's mean over faces."""
        values = self.meter(images)
        a = self.alphas.double() - self.alphas.double().mean()
        out = {}
        for name in MEASURED:
            mean = values[name].double().reshape(-1, len(self.alphas)).mean(0)
            out[name] = float((a * (mean - mean.mean())).sum() / (a ** 2).sum())
        return out


def _normalised(slopes: dict, spread: dict) -> dict:
    return {k: v / spread[k] for k, v in slopes.items()}


def _leakage(normalised: dict, target: str, unmeasured=()) -> float:
    """Mean normalised |slope| of the other measured factors over the target's."""
    skip = {target, *SAME_FACTOR.get(target, ()), *unmeasured}
    others = [abs(v) for k, v in normalised.items() if k not in skip]
    return sum(others) / len(others) / max(abs(normalised[target]), 1e-12)


def _candidates(method: str, model, pool: dict, preset: Preset, meter, seed: int, layers) -> dict:
    """target -> (k x w_dim vectors to choose from, fixed index or None, the W+ layers they move)."""
    if method == "interfacegan":
        scores = meter(pool["image"])
        out = {}
        for t in TARGETS:
            est = gd.InterFaceGAN("w", ratio=preset.ratio, factor=t, seed=seed).fit(pool["w"], scores[t])
            out[t] = (est.direction_.vectors, 0, layers)
        return out
    if method == "ganspace":
        est = gd.GANSpace(min(preset.k, model.config.w_dim), num_ws=model.config.num_ws, seed=seed).fit(pool["w"])
    else:
        est = gd.SeFa(min(preset.k, model.config.w_dim), layers).fit(model)
    return {t: (est.direction_.vectors, None, layers) for t in TARGETS}


def _choose(sweeper, vectors, index, layers, target, spread, cache) -> tuple[int, torch.Tensor, dict, torch.Tensor]:
    """(index, vector, slopes, faces x strengths images): the given index (a direction whose sign
    means something: kept), or the component moving the target most, signed so that + raises the
    target (a component's sign is arbitrary; its sweep is mirrored to match)."""
    best = None
    for i in [index] if index is not None else range(len(vectors)):
        key = (id(vectors), i)
        if key not in cache:
            images = sweeper.images(vectors[i], layers)
            grid = images.reshape(len(sweeper.ws), len(sweeper.alphas), *images.shape[1:])
            cache[key] = (sweeper.slopes(images), grid)
        score = abs(cache[key][0][target]) / spread[target]
        if best is None or score > best[0]:
            best = (score, i)
    i = best[1]
    slopes, images = cache[(id(vectors), i)]
    if index is not None or slopes[target] >= 0:
        return i, vectors[i], slopes, images
    return i, -vectors[i], {k: -v for k, v in slopes.items()}, images.flip(1)  # strengths are symmetric


def _world_target(factors: dict, target: str, edited: dict, delta: torch.Tensor) -> dict:
    """The world factors of the same faces with ``target`` changed by what the edit measured."""
    from mien.data.world import EXPRESSIONS, WORLD_FACTORS

    f = {k: v.clone() for k, v in factors.items()}
    if target == "happy":
        happy = edited["happy"] > 0.5
        f["expression"] = torch.where(happy, torch.full_like(f["expression"], EXPRESSIONS.index("happy")),
                                      f["expression"])
        f["intensity"] = torch.where(happy, edited["intensity"].clamp(0, 1).to(f["intensity"].dtype), f["intensity"])
        return f
    spec = next(x for x in WORLD_FACTORS if x.name == target)
    if spec.kind == "binary":
        f[target] = (edited[target] > 0.5).to(f[target].dtype)
    else:
        f[target] = (f[target] + delta.to(f[target].dtype)).clamp(*spec.range)
    return f


@torch.no_grad()
def _inverted_world(model, ckpt, preset: Preset, seed: int) -> dict:
    """World faces drawn as the checkpoint's training data, their W+ inversions and fixed noise."""
    from mien.control.invert import invert
    from mien.models.checkpoint import training_world

    size = model.config.image_size
    batch = training_world(ckpt, preset.n_invert, seed + 7, size).batch(range(preset.n_invert))
    return {**batch, "ws": invert(model, batch["image"], "w+"),
            "noise": model.noise_maps(preset.n_invert, torch.Generator().manual_seed(seed))}


@torch.no_grad()
def _against_world(meter, sweeper, world: dict, vector, target: str, span: float) -> tuple[float, float, float]:
    """(lpips_mien, landmark NME) of the GAN edit at +span of the inverted world faces against the
    world's exact re-render of them with the target changed by what the evaluator measures the edit
    to have done, and the lpips_mien of the inversion itself."""
    from mien.data.world import render_faces
    from mien.metrics.image import landmark_nme, lpips_mien

    ws, images = world["ws"], world["image"]
    pair = sweeper.images(vector, None, ws, world["noise"], torch.tensor([0.0, span]))
    pair = pair.reshape(len(ws), 2, *images.shape[1:])
    recon, edit = pair[:, 0], pair[:, 1]
    before, after = meter(recon), meter(edit)
    changed = _world_target(world["factors"], target, after, after[target] - before[target])
    reference, landmarks, _ = render_faces(changed, images.shape[-1])
    predicted = meter.evaluator(edit)["landmarks"]
    return (lpips_mien(edit, reference, meter.evaluator), float(landmark_nme(predicted, landmarks)),
            lpips_mien(recon, images, meter.evaluator))


def reproduce(ckpt, out, preset: str = "small", seed: int = 0, progress: bool = True,
              layers: str | None = None) -> Path:
    """Run the study on ``ckpt``; write ``gan-directions.md``, ``results.json`` and ``grids/`` under
    ``out``. ``layers`` (e.g. '0-3'): the W+ inputs every direction moves (SeFa: factorises), default all."""
    import mien
    from mien.control.invert import INVERSIONS
    from mien.evaluator import evaluator_for
    from mien.metrics.image import csim_mien
    from mien.report.grid import save_grid

    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p, out, start = PRESETS[preset], ensure_writable_dir(out), time.time()
    ckpt = Path(ckpt) if ckpt is not None else default_checkpoint()
    model = mien.load(ckpt)
    check_space(model, "w")
    chosen = gd.parse_layers(layers, model.config.num_ws)
    size = model.config.image_size
    meter = gd.FactorMeter(evaluator_for(size)).fit_probes(size, p.n_probe)
    gen = torch.Generator().manual_seed(seed)
    pool = gd.sample_codes(model, p.n_fit, gen, images=True)
    spread = meter.world_spread_
    unmeasured = {k for k, v in meter.probe_r2_.items() if v < RELIABLE_R2}
    faces = gd.sample_codes(model, p.m, gen)
    alphas = torch.linspace(-p.span, p.span, p.steps)
    sweeper = _Sweeper(model, meter, faces["w+"], model.noise_maps(p.m, gen), pool["w"], alphas)
    world = _inverted_world(model, ckpt, p, seed) if "w+" in INVERSIONS else None
    rows = []
    with _progress(progress, len(METHODS) * len(TARGETS)) as advance:
        for method in METHODS:
            candidates, cache, grid = _candidates(method, model, pool, p, meter, seed, chosen), {}, []
            for target in TARGETS:
                vectors, index, layers = candidates[target]
                i, vector, slopes, per_face = _choose(sweeper, vectors, index, layers, target, spread, cache)
                mid = p.steps // 2
                csim = (csim_mien(per_face[:, 0], per_face[:, mid], meter.evaluator)
                        + csim_mien(per_face[:, -1], per_face[:, mid], meter.evaluator)) / 2
                normalised = _normalised(slopes, spread)
                scored = _against_world(meter, sweeper, world, vector, target, p.span) if world else (None,) * 3
                rows.append({"method": method, "factor": target, "index": None if method == "interfacegan" else i,
                             "slope": slopes[target], "slope_normalised": normalised[target],
                             "leakage": _leakage(normalised, target, unmeasured), "csim_mien": csim,
                             "lpips_to_world": scored[0], "nme_to_world": scored[1], "lpips_inversion": scored[2],
                             "slopes": slopes})
                grid.append(per_face[0])
                advance()
            save_grid(torch.cat(grid), out / "grids" / f"{method}.png", nrow=p.steps, scale=2,
                      labels=[f"{t} {a:+.1f}" if j in (0, p.steps - 1) else "" for t in TARGETS
                              for j, a in enumerate(alphas.tolist())])
    text = _markdown(rows, meter, p, ckpt, world is not None, time.time() - start, chosen)
    atomic_write_text(out / "results.json", json.dumps({"checkpoint": str(ckpt), "preset": preset, "seed": seed,
                                                        "probe_r2": meter.probe_r2_, "rows": rows}, indent=2))
    path = out / "gan-directions.md"
    atomic_write_text(path, text)
    return path


def _progress(enabled: bool, total: int):
    """A context giving ``advance()``: a rich bar with rate and ETA, or nothing."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext(lambda: None)

    @contextlib.contextmanager
    def bar():
        from rich.progress import Progress

        with Progress() as progress:
            task = progress.add_task("directions", total=total)
            yield lambda: progress.advance(task)

    return bar()


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _markdown(rows, meter, p: Preset, ckpt, invertible: bool, seconds: float, layers) -> str:
    header = ["method", "factor", "component", "slope / unit", "slope (norm.)", "leakage", "csim_mien",
              "lpips_mien to world", "NME to world"]
    lines = ["## GAN directions checked against the world", "",
             f"Checkpoint `{ckpt}`; {p.n_fit} generated faces to fit on, {p.m} faces moved over {p.steps} "
             f"strengths in [-{p.span}, {p.span}] (units: std of sampled w along the direction); "
             f"GANSpace/SeFa components searched: the first {p.k} (0-based index shown); W+ layers moved: "
             f"{'all' if layers is None else layers}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    weak = {k for k, v in meter.probe_r2_.items() if v < RELIABLE_R2}
    for r in rows:
        factor = r["factor"] + (" (unmeasured)" if r["factor"] in weak else "")
        lines.append("| " + " | ".join([r["method"], factor, "-" if r["index"] is None else str(r["index"]),
                                         _fmt(r["slope"]), _fmt(r["slope_normalised"]), _fmt(r["leakage"]),
                                         _fmt(r["csim_mien"]), _fmt(r["lpips_to_world"]),
                                         _fmt(r["nme_to_world"])]) + " |")
    probes = ", ".join(f"{k} {v:.2f}" for k, v in meter.probe_r2_.items())
    lines += ["", "Slope: change of the evaluator-measured target per unit strength (yaw in degrees, happy and "
              "attributes as probabilities, age/skin tone/light azimuth in world units); normalised: divided by "
              "the std of the factor over world faces as the evaluator measures them. Leakage: mean normalised "
              f"|slope| of the other measured factors ({', '.join(MEASURED)}) over the target's "
              "(0 = only the target moves).",
              f"Factors without an evaluator head are read by ridge probes on its features (held-out R^2: {probes}); "
              f"a probe below R^2 {RELIABLE_R2} cannot read its factor at this image size, so its rows (marked "
              "unmeasured) measure noise and it is left out of the leakage.",
              "World columns: world faces inverted into W+, edited at +span, against the world's exact re-render "
              "with the target changed by the change the evaluator measures on the edit."
              if invertible else "World columns: n/a - this build has no GAN inversion into W+ "
              "(control/invert.py INVERSIONS has no 'w+'), so no world face could be inverted.",
              *([f"Inversion alone (reconstruction vs the world face): lpips_mien "
                 f"{sum(r['lpips_inversion'] for r in rows) / len(rows):.3g}."] if invertible else []),
              f"Run time {seconds:.0f} s."]
    return "\n".join(lines) + "\n"
