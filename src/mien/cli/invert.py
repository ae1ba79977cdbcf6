"""``mien invert RUN``: GAN inversion (Haas §1.3) of an image file or of world/folder faces into
W or W+, by optimisation (Eq. 2.20, the StyleGAN2 projector) or by a trained pSp/e4e encoder;
writes ``codes.safetensors`` + ``codes.json`` and ``grid.png`` (input row, reconstruction row)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import typer

from mien.cli.options import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, option, output


def _count(value: str, name: str) -> int:
    """A positive integer option given as text (so that NaN, negatives and fractions get one line)."""
    from mien.errors import ConfigError

    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 1 and number == int(number)):
        raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
    return int(number)


def _targets(run: Path, image: Path | None, data: str, n: int, seed: int, size: int, align: bool) -> torch.Tensor:
    from mien.data.folder import FolderDataset
    from mien.errors import ConfigError
    from mien.models.checkpoint import training_world

    if image is not None:  # a photo: the face detected, FFHQ-aligned and cropped (issue 19)
        from mien.data.photo import load_face

        return load_face(image, size, align=align)["image"][None]
    if data == "world":
        return training_world(run, n, seed, size).batch(range(n))["image"]
    ds = FolderDataset(data, size=size)
    if len(ds) < n:
        raise ConfigError(f"{data} has {len(ds)} images, fewer than --n {n}")
    return torch.stack([ds[i]["image"] for i in range(n)])


def invert(run: Path = typer.Argument(..., help="StyleGAN checkpoint folder (stylegan, cgan, infogan)."),
           image: Path = typer.Option(None, help="Image file to invert (instead of --data)."),
           align: bool = typer.Option(True, "--align/--no-align", help="Detect and FFHQ-align the face of --image."),
           data: str = typer.Option("world", help="'world' (the GAN's world settings) or an image folder."),
           n: str = typer.Option("16", help="Faces of --data to invert."),
           space: str = typer.Option("w+", help="w or w+."),
           method: str = typer.Option("optimise", help="optimise (Eq. 2.20) or encoder (pSp/e4e)."),
           encoder: Path = typer.Option(None, help="Encoder run (`mien train psp/...`): the codes of --method encoder, "
                                                   "the starting codes of --method optimise."),
           steps: str = typer.Option("200", help="Optimisation steps."),
           lr: float = option(0.1, POSITIVE, help="Peak learning rate of the optimisation."),
           mse_weight: float = option(1.0, NON_NEGATIVE, "--mse-weight", help="lambda of Eq. 2.20 (lpips_mien + lambda MSE)."),
           seed: int = option(12345, NON_NEGATIVE_INT, help="World seed of the faces (default: unseen faces) and noise seed."),
           out: Path = output(Path("inversion"), help="Folder for codes.safetensors, codes.json, grid.png.", folder=True),
           progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar.")):
    """Invert faces into a StyleGAN's W or W+ and write the codes and an input/reconstruction grid."""
    from rich.progress import Progress

    import mien
    from mien.control import gan_invert
    from mien.errors import ConfigError
    from mien.models.stylegan.encoder import GAN_FAMILIES, load_encoder
    from mien.report.grid import save_grid

    steps_n, count = _count(steps, "--steps"), _count(n, "--n")
    if space not in ("w", "w+"):
        raise ConfigError(f"--space {space!r} is unknown; choose w or w+")
    if method not in ("optimise", "encoder"):
        raise ConfigError(f"--method {method!r} is unknown; choose optimise or encoder")
    if method == "encoder" and encoder is None:
        raise ConfigError("--method encoder needs --encoder ENC_RUN (a `mien train psp/...` run on this GAN)")
    model = mien.load(run)
    if model.model_name not in GAN_FAMILIES:
        raise ConfigError(f"{run} holds a {model.model_name!r} model, not a GAN; pass a stylegan, cgan or infogan run")
    enc = load_encoder(encoder, generator=run) if encoder is not None else None
    x = _targets(run, image, data, count, seed, model.config.image_size, align)
    generator = torch.Generator().manual_seed(seed)
    info = {"method": method, "generator": str(run), "encoder": str(encoder) if encoder else None,
            "source": str(image) if image is not None else data, "seed": seed}
    if method == "encoder":
        result = gan_invert.encode(enc, x, space, generator=generator)
    else:
        start = gan_invert.encode(enc, x, space).codes if enc is not None else None
        bar = Progress(transient=True, disable=not progress)
        task = bar.add_task("inverting", total=steps_n)
        with bar:
            result = gan_invert.optimise(model, x, space, steps=steps_n, lr=lr, mse_weight=mse_weight, start=start,
                                         generator=generator, callback=lambda step, logged: bar.advance(task))
        info.update(steps=steps_n, lr=lr, mse_weight=mse_weight)
    gan_invert.save_inversion(result, out, info)
    save_grid(torch.cat([x.clamp(-1, 1), result.images]), out / "grid.png", nrow=len(x), scale=2)
    typer.echo(f"wrote {out} (lpips_mien {float(result.lpips.mean()):.4f}, mse {float(result.mse.mean()):.4f})")
