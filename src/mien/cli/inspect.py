"""Inspection verbs on any checkpoint, each writing a PNG grid: sample, reconstruct, traverse,
interpolate."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from mien.cli.options import FINITE, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, option, output


def _load(ckpt: Path):
    import mien

    return mien.load(ckpt)


def _data_batch(data: str, ckpt: Path, size: int, n: int, seed: int, indices: list[int] | None = None) -> dict:
    """Images from 'world' (with the world settings the checkpoint was trained on) or a folder."""
    from mien.data.folder import FolderDataset
    from mien.errors import ConfigError
    from mien.models.checkpoint import training_world

    idx = indices if indices is not None else list(range(n))
    if data == "world":
        return training_world(ckpt, max(idx) + 1, seed, size).batch(idx)
    ds = FolderDataset(data, size=size)
    if max(idx) >= len(ds):
        raise ConfigError(f"{data} has {len(ds)} images; index {max(idx)} is out of range")
    return {"image": torch.stack([ds[i]["image"] for i in idx])}


def sample(ckpt: Path = typer.Argument(..., help="Checkpoint folder."),
           n: int = option(64, POSITIVE_INT, help="Number of samples."),
           seed: int = option(0, NON_NEGATIVE_INT, help="Random seed."),
           label: str = typer.Option(None, help="Class to generate (name or index), for conditional models."),
           guidance: float = option(None, FINITE, help="Classifier-free guidance scale gamma (0 uncond, 1 cond)."),
           steps: int = option(None, POSITIVE_INT, help="Sampler steps (diffusion)."),
           eta: float = option(None, NON_NEGATIVE, help="0 = DDIM, 1 = DDPM (diffusion)."),
           psi: float = option(None, FINITE, help="Truncation psi: w' = w_avg + psi (w - w_avg) (GANs)."),
           per_class: int = option(0, NON_NEGATIVE_INT, "--per-class", help="Instead of --n: this many samples of every class, a row each."),
           out: Path = output(Path("samples.png"), folder=None, help="PNG grid to write (sequence models: a folder)."),
           size: int = option(64, POSITIVE_INT, help="Pixel size of rendered sequence frames (sequence models).")):
    """Draw samples of any family: images as a PNG grid, landmark sequences as animations."""
    from mien.errors import ConfigError
    from mien.models.capabilities import Sampler
    from mien.report.samples import write_samples

    model = _load(ckpt)
    if not isinstance(model, Sampler):
        raise ConfigError(f"{model.model_name} does not generate samples; pass the checkpoint of a generative model")
    options = {k: v for k, v in {"guidance": guidance, "steps": steps, "eta": eta}.items() if v is not None}
    if options and model.model_name != "diffusion":
        raise ConfigError(f"--{next(iter(options))} applies to diffusion models; {model.model_name} has no such sampler")
    if psi is not None:
        if "w" not in getattr(model, "latent_spaces", dict)():
            raise ConfigError(f"--psi applies to GANs; {model.model_name} has no W space to truncate")
        options["psi"] = psi
    generator = torch.Generator().manual_seed(seed)
    labels = None
    if per_class:
        names = _class_names(model)
        cond = [c for c in range(len(names)) for _ in range(per_class)]
        labels = [names[c] if j == 0 else "" for c in range(len(names)) for j in range(per_class)]
        n, label = len(cond), cond
    with torch.no_grad():
        drawn = model.sample(n, cond=label, generator=generator, **options)
    written = write_samples(drawn, out, labels=labels, nrow=per_class or None, size=size,
                            faces=getattr(model, "faces", None))
    typer.echo(f"wrote {written[0] if len(written) == 1 else written[0].parent}")


def _class_names(model) -> list[str]:
    from mien.errors import ConfigError

    config = model.config
    if not getattr(config, "condition", None):
        raise ConfigError(f"{model.model_name} is not class-conditional; drop --per-class / --to all")
    return list(config.class_names) or [str(i) for i in range(config.num_classes)]


def edit(ckpt: Path = typer.Argument(..., help="Diffusion checkpoint folder."),
         image: Path = typer.Option(None, help="Image file or photo to edit (default: a world face)."),
         align: bool = typer.Option(True, "--align/--no-align", help="Detect and FFHQ-align the face of --image."),
         index: int = option(0, NON_NEGATIVE_INT, help="World face to edit when no --image is given."),
         source: str = typer.Option("neutral", "--from", help="Class of the input."),
         target: str = typer.Option(..., "--to", help="Class to move to, or 'all' for a strip of every class."),
         t0: int = option(500, NON_NEGATIVE_INT, help="Editing strength: the timestep inverted to."),
         guidance: float = option(4.0, FINITE, help="Classifier-free guidance scale gamma of the regeneration."),
         steps: int = option(40, POSITIVE_INT, help="DDIM steps over [0, t0]."),
         seed: int = option(12345, NON_NEGATIVE_INT, help="World seed for the default face."),
         out: Path = output(Path("edited.png"), folder=False, help="PNG (input | edit) to write.")):
    """Emotion editing by DDIM inversion and guided regeneration (Pikoulis §4.4)."""
    from mien.control.invert import edit as edit_image
    from mien.report.grid import save_grid

    model = _load(ckpt)
    size = model.config.image_size
    if image is not None:
        x = _image_file(image, size, align)
    else:
        x = _data_batch("world", ckpt, size, 1, seed, [index])["image"]
    targets = [c for c in _class_names(model) if c != source] if target == "all" else [target]
    edited = [edit_image(model, x, source, t, t0=t0, steps=steps, guidance=guidance,
                              generator=torch.Generator().manual_seed(0)) for t in targets]
    save_grid(torch.cat([x, *edited]), out, nrow=len(targets) + 1, scale=2, labels=[source, *targets])
    typer.echo(f"wrote {out}")


def _image_file(path: Path, size: int, align: bool = True) -> torch.Tensor:
    """A photo as a 1 x 3 x size x size tensor in [-1, 1]: the face detected and aligned, or the centre square."""
    from mien.data.photo import load_face

    return load_face(path, size, align=align)["image"][None]


def reconstruct(ckpt: Path = typer.Argument(..., help="Checkpoint folder."),
                data: str = typer.Option("world", help="'world' or an image folder."),
                image: Path = typer.Option(None, help="A photo to reconstruct instead of --data."),
                align: bool = typer.Option(True, "--align/--no-align", help="Detect and FFHQ-align the face of --image."),
                n: int = option(16, POSITIVE_INT, help="Number of images."),
                seed: int = option(12345, NON_NEGATIVE_INT, help="World seed (default: unseen faces)."),
                out: Path = output(Path("reconstructions.png"), folder=False, help="PNG grid to write.")):
    """Inputs (top row of each pair) and their reconstructions (below)."""
    from mien.report.grid import save_grid

    model = _load(ckpt)
    if image is not None:
        x, n = _image_file(image, model.config.image_size, align), 1
    else:
        x = _data_batch(data, ckpt, model.config.image_size, n, seed)["image"]
    with torch.no_grad():
        r = model.reconstruct(x)
    rows = min(n, 8)
    pairs = torch.cat([torch.cat([x[i:i + rows], r[i:i + rows]]) for i in range(0, n, rows)])
    save_grid(pairs, out, nrow=rows, scale=2)
    typer.echo(f"wrote {out}  (mse {((x - r) ** 2).mean():.4f})")


def traverse(ckpt: Path = typer.Argument(..., help="Checkpoint folder."),
             dims: str = typer.Option("all", help="Comma-separated latent dimensions, or 'all'."),
             steps: int = option(9, POSITIVE_INT, help="Values per row."),
             span: float = option(3.0, POSITIVE, help="Sweep from -span to +span (with --range fixed)."),
             sweep: str = typer.Option("fixed", "--range", help="fixed: -span..span; data: the 2-98% range of "
                                                                  "each dimension over encoded data."),
             index: int = option(0, NON_NEGATIVE_INT, help="Which world/folder image gives the base code."),
             data: str = typer.Option("world", help="'world' or an image folder."),
             image: Path = typer.Option(None, help="A photo that gives the base code instead of --data/--index."),
             align: bool = typer.Option(True, "--align/--no-align", help="Detect and FFHQ-align the face of --image."),
             seed: int = option(12345, NON_NEGATIVE_INT, help="World seed."),
             feature: str = typer.Option(None, help="Label models: scale these label features (c, or the model's "
                                                    "part: u, zc) by lambda over --magnitude instead of sweeping dims."),
             magnitude: str = typer.Option("0,2", help="LO,HI: the lambda range of --feature, within [0, 2]."),
             label: str = typer.Option(None, help="The label whose features --feature scales (default: the first)."),
             predicted: bool = typer.Option(False, "--predicted", help="With --feature: use argmax q(y|x), not the world's labels."),
             out: Path = output(Path("traversal.png"), folder=False, help="PNG grid to write.")):
    """One row per latent dimension, that dimension swept while the others keep the image's code;
    with --feature, one row of d(y, z, lambda c) for lambda over --magnitude (Zou §6.4)."""
    if feature is not None:
        return _magnitude(ckpt, feature, magnitude, label, predicted, steps, index, image, align, seed, out)
    from mien.control.direction import traverse as sweep_along
    from mien.control.directions import AxisDirection, dimension_labels
    from mien.control.invert import invert
    from mien.errors import ConfigError
    from mien.report.grid import save_grid

    if sweep not in ("fixed", "data"):
        raise ConfigError(f"--range {sweep!r}: use fixed or data")
    model = _load(ckpt)
    size = model.config.image_size
    x = _image_file(image, size, align) if image is not None else _data_batch(data, ckpt, size, 1, seed, [index])["image"]
    with torch.no_grad():
        z = invert(model, x, "z")
        chosen = list(range(z.shape[1])) if dims == "all" else [int(d) for d in dims.split(",")]
        if sweep == "data":
            axes = AxisDirection(chosen).fit(invert(model, _data_batch(data, ckpt, size, 256, seed + 1)["image"], "z"))
            values = axes.sweep(steps)
        else:
            axes, values = AxisDirection(chosen, z.shape[1]).fit(), torch.linspace(-span, span, steps)
        images = sweep_along(model, z, axes.direction_, values, absolute=True)
    save_grid(images, out, nrow=steps, scale=2, labels=dimension_labels(model, chosen, steps))
    typer.echo(f"wrote {out}")


def _magnitude(ckpt, feature, span, label, predicted, steps, index, image, align, seed, out):
    from mien.control.swap import face_and_labels, feature_part, label_index, magnitude
    from mien.errors import ConfigError
    from mien.report.grid import save_grid

    try:
        lo, hi = (float(v) for v in span.split(","))
    except ValueError:
        raise ConfigError(f"--magnitude {span!r}: give LO,HI, e.g. 0,2") from None
    model = _load(ckpt)
    feature_part(model, feature)
    l = label_index(model, label)
    x, y = face_and_labels(str(image) if image is not None else str(index), ckpt, seed, model.config.image_size,
                model.config.labels, align)
    lambdas = torch.linspace(lo, hi, steps).tolist()
    images = magnitude(model, x, lambdas, l, None if predicted else y)[:, 0]
    save_grid(images, out, nrow=steps, scale=2, labels=[f"lambda={v:.2f}" for v in lambdas])
    typer.echo(f"wrote {out}")


def _feature_path(ckpt, feature, label, predicted, a, b, steps, seed, out):
    from mien.control.swap import face_and_labels, feature_part, interpolate_features, label_index
    from mien.report.grid import save_grid

    model = _load(ckpt)
    feature_part(model, feature)
    l = label_index(model, label)
    (xa, ya), (xb, yb) = (face_and_labels(str(i), ckpt, seed, model.config.image_size, model.config.labels, True)
                          for i in (a, b))
    alphas = torch.linspace(0, 1, steps).tolist()
    with torch.no_grad():
        images = interpolate_features(model, xa, xb, alphas, l, *((None, None) if predicted else (ya, yb)))[:, 0]
    save_grid(torch.cat([xa, images, xb]), out, nrow=steps + 2, scale=2,
              labels=["a", *(f"alpha={v:.2f}" for v in alphas), "b"])
    typer.echo(f"wrote {out}")


def interpolate(ckpt: Path = typer.Argument(..., help="Checkpoint folder."),
                a: int = option(0, NON_NEGATIVE_INT, help="Index of the first image."),
                b: int = option(1, NON_NEGATIVE_INT, help="Index of the second image."),
                method: str = typer.Option("lerp", help="lerp or slerp."),
                steps: int = option(10, POSITIVE_INT, help="Images along the path."),
                data: str = typer.Option("world", help="'world' or an image folder."),
                seed: int = option(12345, NON_NEGATIVE_INT, help="World seed."),
                feature: str = typer.Option(None, help="Label models: move only these label features (c, or the "
                                                       "model's part: u, zc) of face a towards face b's."),
                label: str = typer.Option(None, help="The label whose features --feature moves (default: the first)."),
                predicted: bool = typer.Option(False, "--predicted", help="With --feature: use argmax q(y|x), not the world's labels."),
                out: Path = output(Path("interpolation.png"), folder=False, help="PNG strip to write.")):
    """Decode codes along the path between the codes of two images; with --feature, face a with
    its label features moved towards b's, d(y_a, z_a, c_a + alpha (c_b - c_a)) (Zou §6.4)."""
    if feature is not None:
        return _feature_path(ckpt, feature, label, predicted, a, b, steps, seed, out)
    from mien.control.direction import render
    from mien.control.interpolate import interpolate as path
    from mien.control.invert import invert
    from mien.report.grid import save_grid

    model = _load(ckpt)
    x = _data_batch(data, ckpt, model.config.image_size, 2, seed, [a, b])["image"]
    with torch.no_grad():
        z = invert(model, x, "z")
        images = render(model, "z", path(z[0], z[1], steps, method))
    save_grid(torch.cat([x[:1], images, x[1:]]), out, nrow=steps + 2, scale=2)
    typer.echo(f"wrote {out}")
