"""``mien eval``: score a checkpoint (``mien eval ckpt CKPT``) or two image folders
(``mien eval images GEN_DIR --ref REF_DIR``) with the metric registry, print a table and write
JSON. A sub-app with two commands keeps both forms explicit (a bare ``mien eval CKPT`` would
make a checkpoint folder named 'images' ambiguous)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mien.cli.options import NON_NEGATIVE_INT, POSITIVE_INT, option, output

app = typer.Typer(help="Score a checkpoint or a folder of images with mien's metrics.", no_args_is_help=True)

_METRICS_HELP = "Comma-separated metric names (fid,kid,pr,precision,recall,pr_class,ppl,ppl_z,ppl_end,psnr,ssim,lpips,csim,expr_acc,attr_acc,nme," \
                "beta_vae,factor_vae,mig,sap,dci,modularity,explicitness) or 'all' (every one that applies)."


def _evaluator(path: Path | None, size: int):
    from mien.evaluator import evaluator_for

    return evaluator_for(size, path)


def _bar(total: int):
    from rich.progress import Progress

    progress = Progress(transient=True)
    task = progress.add_task("scoring", total=total)

    def advance(n: int, more: int = 0) -> None:
        if more:
            progress.update(task, total=progress.tasks[0].total + more)
        progress.advance(task, n)

    return progress, advance


def _finish(results: dict, out: Path, info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from mien.io import atomic_write_text, ensure_writable_dir

    ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    atomic_write_text(out, json.dumps({**info, "metrics": results}, indent=2, default=float))
    table = Table("metric", "value", title=f"wrote {out}")
    for k, v in results.items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)


@app.command("ckpt")
def ckpt(ckpt: Path = typer.Argument(..., help="Checkpoint folder."),
         metrics: str = typer.Option("all", help=_METRICS_HELP),
         n: int = option(2000, POSITIVE_INT, help="Data images (and samples) to score."),
         data: str = typer.Option("world", help="'world' (the checkpoint's world settings) or an image folder."),
         seed: int = option(12345, NON_NEGATIVE_INT, help="World seed of the scored faces (default: unseen faces) and sampling seed."),
         batch_size: int = option(250, POSITIVE_INT, help="Images per batch."),
         evaluator: Path = typer.Option(None, help="Evaluator weights folder (default: the shipped one)."),
         out: Path = output(Path("metrics.json"), folder=False, help="JSON file to write.")):
    """Score any mien checkpoint: samples vs data (fid, kid, pr), reconstructions vs inputs
    (psnr, ssim, lpips, csim, expr_acc, attr_acc, nme), codes vs world factors (disentanglement)
    and a GAN's perceptual path length (ppl, ppl_z, ppl_end; --n pairs)."""
    import mien
    from mien.data.folder import FolderDataset
    from mien.errors import ConfigError
    from mien.metrics.evaluate import dataset_batches, evaluate_model
    from mien.models.checkpoint import training_world

    if n < 10:
        raise ConfigError(f"--n {n} is too small to score; use at least 10")
    model = mien.load(ckpt)
    size = model.config.image_size
    if data == "world":
        ds = training_world(ckpt, n, seed, size)
    else:
        ds = FolderDataset(data, size=size)
    ev = _evaluator(evaluator, size)
    progress, advance = _bar(n)
    with progress:
        results = evaluate_model(model, dataset_batches(ds, n, batch_size), metrics, ev,
                                 getattr(ds, "factors", None), seed, advance)
    _finish(results, out, {"checkpoint": str(ckpt), "n": n, "data": data, "seed": seed,
                           "evaluator": ev.meta.get("recipe", {})})


@app.command("images")
def images(gen_dir: Path = typer.Argument(..., help="Folder of generated (or edited) images."),
           ref: Path = typer.Option(..., help="Folder of reference images."),
           metrics: str = typer.Option("fid,kid,pr", help=_METRICS_HELP + " Pairwise ones match files in order."),
           size: int = option(64, POSITIVE_INT, help="Size the images are resized to (the evaluator's: 32 or 64)."),
           batch_size: int = option(250, POSITIVE_INT, help="Images per batch."),
           evaluator: Path = typer.Option(None, help="Evaluator weights folder (default: the shipped one)."),
           features: Path = typer.Option(None, help="Your TorchScript feature network (e.g. Inception) for "
                                                    "fid/kid: takes N x 3 x S x S floats in [0, 1], returns N x D."),
           out: Path = output(Path("metrics.json"), folder=False, help="JSON file to write.")):
    """Score the images of any generator against reference images."""
    from mien.data.folder import FolderDataset
    from mien.errors import ConfigError
    from mien.metrics.evaluate import dataset_batches, evaluate_images
    from mien.metrics.fid import load_feature_network

    if features is not None and not {"fid", "kid", "all"} & {m.strip() for m in metrics.split(",")}:
        raise ConfigError("--features is for fid and kid; add fid or kid to --metrics")
    net = load_feature_network(features) if features is not None else None
    gen_ds, ref_ds = FolderDataset(gen_dir, size=size), FolderDataset(ref, size=size)
    ev = _evaluator(evaluator, size)
    progress, advance = _bar(len(gen_ds) + len(ref_ds))
    with progress:
        results = evaluate_images(dataset_batches(gen_ds, len(gen_ds), batch_size),
                                  dataset_batches(ref_ds, len(ref_ds), batch_size), metrics, ev,
                                  paired=len(gen_ds) == len(ref_ds), progress=advance, features=net)
    _finish(results, out, {"generated": str(gen_dir), "reference": str(ref), "n_generated": len(gen_ds),
                           "n_reference": len(ref_ds), "evaluator": ev.meta.get("recipe", {}),
                           **({"features": str(features)} if features is not None else {})})
