"""`mien directions fit` (InterFaceGAN, GANSpace, SeFa on a GAN checkpoint, saved as one
.safetensors file) and `mien edit`: a direction edit grid when ``--direction`` is given, else the
diffusion emotion edit of :func:`mien.cli.inspect.edit`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import typer

from mien.cli.options import FINITE, NON_NEGATIVE_INT, POSITIVE_INT, PROBABILITY, option, output

app = typer.Typer(help="Latent directions of GANs: fit them, then `mien edit --direction`.", no_args_is_help=True)
METHODS = ("interfacegan", "ganspace", "sefa")


@app.command("fit")
def fit(ckpt: Path = typer.Argument(..., help="GAN checkpoint folder."),
        method: str = typer.Option(..., help="interfacegan, ganspace or sefa."),
        factor: str = typer.Option(None, help="InterFaceGAN: the factor scored (yaw, happy, glasses, age...)."),
        layers: str = typer.Option(None, help="W+ layers the direction moves, e.g. 0-3 or 0,2 (default: all)."),
        n: int = option(2000, POSITIVE_INT, help="Generated faces (InterFaceGAN) or sampled w (GANSpace)."),
        k: int = option(5, POSITIVE_INT, help="Components (GANSpace, SeFa)."),
        space: str = typer.Option("w", help="InterFaceGAN: the code space z, w, w+ or s."),
        ratio: float = option(0.02, PROBABILITY, help="InterFaceGAN: fraction of the most extreme faces kept on each side."),
        threshold: float = option(None, FINITE, help="InterFaceGAN: label every face score > threshold instead "
                                                   "of keeping the extremes."),
        condition: list[Path] = typer.Option(None, help="InterFaceGAN: a direction file to stay orthogonal to "
                                                        "(conditional editing; repeat for several)."),
        seed: int = option(0, NON_NEGATIVE_INT, help="Random seed."),
        out: Path = output(Path("direction.safetensors"), help="The direction file to write (.safetensors).", folder=False)):
    """Fit a latent direction of a GAN and save it as one .safetensors file."""
    from mien.control import gan_directions as gd
    from mien.control.direction import check_space
    from mien.errors import ConfigError

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not str(out).endswith(".safetensors"):
        raise ConfigError(f"--out {out}: a direction file must end in .safetensors")
    if n < 2:
        raise ConfigError(f"--n {n}: give at least 2 samples")
    model = _load(ckpt)
    check_space(model, "w")
    num_ws = model.config.num_ws
    chosen = gd.parse_layers(layers, num_ws)
    with torch.no_grad():
        if method == "interfacegan":
            if factor is None:
                raise ConfigError("InterFaceGAN needs --factor (e.g. yaw, happy, glasses, age)")
            if space not in gd.CODE_SPACES:
                raise ConfigError(f"--space {space!r}: choose one of {', '.join(gd.CODE_SPACES)}")
            if chosen is not None and space != "w":
                raise ConfigError("--layers applies to w directions; drop it or use --space w")
            others = [_condition(path, space, model) for path in condition or []]
            meter = _meter(model, factor)
            with _bar(f"generating and scoring {n} faces", n) as advance:
                estimator = gd.fit_interfacegan(model, meter, factor, n, space, ratio, chosen, seed, advance,
                                                others or None, threshold)
        elif method == "ganspace":
            w = gd.sample_codes(model, n, torch.Generator().manual_seed(seed))["w"]
            estimator = gd.GANSpace(k, chosen, num_ws, data=f"{n} sampled w", seed=seed).fit(w)
        else:
            estimator = gd.SeFa(k, chosen, data=str(ckpt)).fit(model)
    estimator.direction_.provenance["checkpoint"] = str(ckpt)
    path = estimator.direction_.save(out)
    typer.echo(json.dumps(gd.describe(estimator.direction_)))
    typer.echo(f"wrote {path}")


def _bar(description: str, total: int):
    """A rich progress bar (rate and ETA) whose ``advance(count)`` the work calls."""
    import contextlib

    from rich.progress import Progress

    @contextlib.contextmanager
    def bar():
        with Progress(transient=True) as progress:
            task = progress.add_task(description, total=total)
            yield lambda count: progress.advance(task, count)

    return bar()


def _load(ckpt: Path):
    import mien

    return mien.load(ckpt)


def _condition(path: Path, space: str, model):
    """A direction to project out, checked against the space being fitted."""
    from mien.control.direction import Direction
    from mien.errors import ConfigError

    d = Direction.load(path)
    shape = tuple(model.latent_spaces()[space])
    if d.space != space or d.shape != shape:
        raise ConfigError(f"--condition {path} is a {d.space} direction of shape {d.shape}; this fit needs "
                          f"{space} of shape {shape}")
    return d


def _meter(model, factor: str):
    from mien.control.gan_directions import PROBED_FACTORS, FactorMeter
    from mien.evaluator import evaluator_for

    size = model.config.image_size
    meter = FactorMeter(evaluator_for(size))
    if factor in PROBED_FACTORS:
        meter.fit_probes(size, names=[factor])
    meter.check(factor)
    return meter


def strengths(text: str, steps: int) -> torch.Tensor:
    """'-3,3' and a number of steps -> the evenly spaced strengths; a ConfigError for NaN/inf or steps < 2."""
    from mien.errors import ConfigError

    if steps is None or steps < 2:
        raise ConfigError(f"--steps {steps}: a strength sweep needs at least 2 steps")
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--strength {text!r}: give two numbers low,high such as -3,3") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConfigError(f"--strength {text!r}: strengths must be finite numbers")
    return torch.linspace(lo, hi, steps)


def _codes(model, direction, image: Path | None, n: int, seed: int, align: bool = True) -> tuple[torch.Tensor, list | None]:
    """Codes in the direction's space (and a GAN's fixed noise maps): of the image, else generated."""
    from mien.cli.inspect import _image_file
    from mien.control.invert import INVERSIONS, invert
    from mien.control.gan_directions import sample_codes
    from mien.errors import ConfigError

    gen, space = torch.Generator().manual_seed(seed), direction.space
    gan = "w" in model.latent_spaces()
    if image is None:
        if not gan:
            return torch.randn(n, *model.latent_spaces()[space], generator=gen), None
        drawn = sample_codes(model, n, gen)  # a w direction moves W+ codes (its layer range)
        return drawn["w+" if space == "w" else space], model.noise_maps(n, gen)
    x = _image_file(image, model.config.image_size, align)
    if not gan:
        return invert(model, x, space), None
    if "w+" not in INVERSIONS:
        raise ConfigError("this build has no GAN inversion; drop --image to edit generated faces")
    ws = invert(model, x, "w+")
    if space in ("w", "w+"):
        return ws, model.noise_maps(1, gen)
    if space == "s":
        return model.styles(ws), model.noise_maps(1, gen)
    raise ConfigError(f"an image cannot be inverted into {space!r}; use a w, w+ or s direction with --image")


def sd_scale(model, direction, n: int = 1000, seed: int = 0) -> float:
    """The standard deviation of sampled codes along the unit vector of a one-vector direction (the
    unit of ``--units sd``; the demo's and ``reproduce gan-directions``' strengths). For a GAN the
    codes are sampled w (or s); for other models the prior, N(0, I), whose std along any unit vector is 1."""
    from mien.control.gan_directions import sample_codes

    v = direction.vectors[0].flatten()
    v = v / v.norm()
    if "w" not in model.latent_spaces() or direction.space not in ("w", "s"):
        return 1.0
    codes = sample_codes(model, n, torch.Generator().manual_seed(seed))[direction.space]
    return float((codes.flatten(1) @ v).std())


def direction_edit(ckpt: Path, direction: Path, strength: str, steps: int, image: Path | None, n: int,
                   component: int, seed: int, out: Path, align: bool = True, units: str = "raw") -> Path:
    """Rows = faces, columns = strengths along one vector of the direction, in its own units
    (``raw``: alpha v) or in standard deviations of sampled codes along it (``sd``)."""
    from mien.control.direction import Direction, traverse
    from mien.errors import ConfigError
    from mien.report.grid import save_grid

    alphas = strengths(strength, steps)
    if units not in ("raw", "sd"):
        raise ConfigError(f"--units {units!r}: choose raw (alpha v) or sd (std of sampled codes along v)")
    if n < 1:
        raise ConfigError(f"--n {n}: give at least one face")
    d = Direction.load(direction)
    if not 0 <= component < len(d.vectors):
        raise ConfigError(f"--component {component}: the direction holds vectors 0..{len(d.vectors) - 1}")
    model = _load(ckpt)
    one = Direction(d.space, d.vectors[component:component + 1], d.layers, d.timesteps, d.sign, d.provenance)
    with torch.no_grad():
        if units == "sd":
            unit = one.vectors / one.vectors.flatten(1).norm() * sd_scale(model, one)
            one = Direction(one.space, unit, one.layers, one.timesteps, one.sign, one.provenance)
        codes, noise = _codes(model, one, image, n, seed, align)
        options = {} if noise is None or one.space == "z" else {
            "noise": [m.repeat_interleave(len(alphas), 0) for m in noise]}
        images = traverse(model, codes, one, alphas, **options)
    labels = [f"{a:+.2g}" if i < len(alphas) else "" for i, a in enumerate(alphas.tolist() * len(codes))]
    save_grid(images.clamp(-1, 1), out, nrow=len(alphas), scale=2, labels=labels)
    return Path(out)


def edit(ckpt: Path = typer.Argument(..., help="Checkpoint folder."),
         direction: Path = typer.Option(None, help="A direction file (.safetensors) or folder: edit along it."),
         strength: str = typer.Option("-3,3", help="Direction edit: strength range low,high."),
         units: str = typer.Option("raw", help="Direction edit: strengths as alpha v (raw) or in std of sampled "
                                                "codes along v (sd, as the demo and reproduce gan-directions)."),
         n: int = option(4, POSITIVE_INT, help="Direction edit: generated faces (rows) when no --image is given."),
         component: int = option(0, NON_NEGATIVE_INT, help="Direction edit: which vector of a k-vector direction."),
         image: Path = typer.Option(None, help="Image file to edit (default: generated faces / a world face)."),
         align: bool = typer.Option(True, "--align/--no-align", help="Detect and FFHQ-align the face of --image."),
         index: int = option(0, NON_NEGATIVE_INT, help="Diffusion edit: world face to edit when no --image is given."),
         source: str = typer.Option("neutral", "--from", help="Diffusion edit: class of the input."),
         target: str = typer.Option(None, "--to", help="Diffusion edit: class to move to, or 'all'."),
         t0: int = option(500, POSITIVE_INT, help="Diffusion edit: the timestep inverted to."),
         guidance: float = option(4.0, FINITE, help="Diffusion edit: classifier-free guidance scale."),
         steps: int = option(None, POSITIVE_INT, help="Strengths per row (direction edit, 7) or DDIM steps (40)."),
         seed: int = option(None, NON_NEGATIVE_INT, help="Random seed (direction edit, default 0; world seed, default 12345)."),
         out: Path = output(Path("edited.png"), help="PNG grid to write.", folder=False)):
    """Edit faces: along a latent direction (--direction; rows = faces, columns = strengths), or a
    diffusion model's emotion edit (--to; Pikoulis §4.4)."""
    from mien.cli import inspect
    from mien.errors import ConfigError

    if direction is not None:
        if target is not None:
            raise ConfigError("--direction and --to are two different edits; give one of them")
        path = direction_edit(ckpt, direction, strength, 7 if steps is None else steps, image, n, component,
                              0 if seed is None else seed, out, align, units)
        typer.echo(f"wrote {path}")
        return
    if target is None:
        raise ConfigError("give --direction FILE (a latent direction edit) or --to CLASS (a diffusion emotion edit)")
    inspect.edit(ckpt, image=image, align=align, index=index, source=source, target=target, t0=t0, guidance=guidance,
                 steps=40 if steps is None else steps, seed=12345 if seed is None else seed, out=out)
