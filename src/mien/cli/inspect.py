"""Inspection verbs on any checkpoint, each writing a PNG grid: sample, reconstruct, traverse,
interpolate."""

from __future__ import annotations

from pathlib import Path

import torch
import typer


def _load(ckpt: Path):
    import mien

    return mien.load(ckpt)


def _data_batch(data: str, ckpt: Path, size: int, n: int, seed: int, indices: list[int] | None = None) -> dict:
    """Images from 'world' (with the world settings the checkpoint was trained on) or a folder."""
    from mien.data.folder import FolderDataset
    from mien.data.world import WorldDataset
    from mien.errors import ConfigError
    from mien.train.checkpoint import read_config

    idx = indices if indices is not None else list(range(n))
    if data == "world":
        cfg = read_config(ckpt).get("data", {})
        ds = WorldDataset(max(idx) + 1, size, seed, cfg.get("design", "iid"), fixed=cfg.get("fixed", {}),
                          ranges=cfg.get("ranges", {}))
        return ds.batch(idx)
    ds = FolderDataset(data, size=size)
    if max(idx) >= len(ds):
        raise ConfigError(f"{data} has {len(ds)} images; index {max(idx)} is out of range")
    return {"image": torch.stack([ds[i]["image"] for i in idx])}


def sample(ckpt: Path = typer.Argument(..., help="Checkpoint folder."),
           n: int = typer.Option(64, help="Number of samples."),
           seed: int = typer.Option(0, help="Random seed."),
           out: Path = typer.Option(Path("samples.png"), help="PNG grid to write.")):
    """Draw samples from the model's prior."""
    from mien.report.grid import save_grid

    model = _load(ckpt)
    with torch.no_grad():
        images = model.sample(n, generator=torch.Generator().manual_seed(seed))
    save_grid(images, out, scale=2)
    typer.echo(f"wrote {out}")


def reconstruct(ckpt: Path = typer.Argument(..., help="Checkpoint folder."),
                data: str = typer.Option("world", help="'world' or an image folder."),
                n: int = typer.Option(16, help="Number of images."),
                seed: int = typer.Option(12345, help="World seed (default: unseen faces)."),
                out: Path = typer.Option(Path("reconstructions.png"), help="PNG grid to write.")):
    """Inputs (top row of each pair) and their reconstructions (below)."""
    from mien.report.grid import save_grid

    model = _load(ckpt)
    x = _data_batch(data, ckpt, model.config.image_size, n, seed)["image"]
    with torch.no_grad():
        r = model.reconstruct(x)
    rows = min(n, 8)
    pairs = torch.cat([torch.cat([x[i:i + rows], r[i:i + rows]]) for i in range(0, n, rows)])
    save_grid(pairs, out, nrow=rows, scale=2)
    typer.echo(f"wrote {out}  (mse {((x - r) ** 2).mean():.4f})")


def traverse(ckpt: Path = typer.Argument(..., help="Checkpoint folder."),
             dims: str = typer.Option("all", help="Comma-separated latent dimensions, or 'all'."),
             steps: int = typer.Option(9, help="Values per row, from -span to +span."),
             span: float = typer.Option(3.0, help="Largest |value|."),
             index: int = typer.Option(0, help="Which world/folder image gives the base code."),
             data: str = typer.Option("world", help="'world' or an image folder."),
             seed: int = typer.Option(12345, help="World seed."),
             out: Path = typer.Option(Path("traversal.png"), help="PNG grid to write.")):
    """One row per latent dimension, that dimension swept from -span to span."""
    from mien.control.directions import axis_traversal
    from mien.report.grid import save_grid

    model = _load(ckpt)
    x = _data_batch(data, ckpt, model.config.image_size, 1, seed, [index])["image"]
    with torch.no_grad():
        z = model.encode(x)[0]
        chosen = list(range(z.shape[0])) if dims == "all" else [int(d) for d in dims.split(",")]
        images = model.decode(axis_traversal(z, chosen, torch.linspace(-span, span, steps)))
    labels = _dim_labels(model, chosen, steps)
    save_grid(images, out, nrow=steps, scale=2, labels=labels)
    typer.echo(f"wrote {out}")


def _dim_labels(model, dims, steps):
    names = model.attribute_dims() if hasattr(model, "attribute_dims") else {}
    by_dim = {d: n for n, d in names.items()}
    return [f"z{d} {by_dim.get(d, '')}".strip() if j == 0 else "" for d in dims for j in range(steps)]


def interpolate(ckpt: Path = typer.Argument(..., help="Checkpoint folder."),
                a: int = typer.Option(0, help="Index of the first image."),
                b: int = typer.Option(1, help="Index of the second image."),
                method: str = typer.Option("lerp", help="lerp or slerp."),
                steps: int = typer.Option(10, help="Images along the path."),
                data: str = typer.Option("world", help="'world' or an image folder."),
                seed: int = typer.Option(12345, help="World seed."),
                out: Path = typer.Option(Path("interpolation.png"), help="PNG strip to write.")):
    """Decode codes along the path between the codes of two images."""
    from mien.control.interpolate import interpolate as path
    from mien.report.grid import save_grid

    model = _load(ckpt)
    x = _data_batch(data, ckpt, model.config.image_size, 2, seed, [a, b])["image"]
    with torch.no_grad():
        z = model.encode(x)
        images = model.decode(path(z[0], z[1], steps, method))
    save_grid(torch.cat([x[:1], images, x[1:]]), out, nrow=steps + 2, scale=2)
    typer.echo(f"wrote {out}")
