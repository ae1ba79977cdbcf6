"""`mien data`: export world data sets and draw grids of any data set."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from mien.cli.options import NON_NEGATIVE_INT, POSITIVE_INT, option, output

from mien.data.world import WorldDataset, WorldSequenceDataset
from mien.errors import ConfigError

app = typer.Typer(help="Make, export and look at data sets.", no_args_is_help=True)


@app.command()
def synth(
    out: Path = output(..., folder=True, help="Folder to write (images/, metadata.csv, factors.json)."),
    n: int = option(1000, POSITIVE_INT, help="Number of faces (default for factorial: all its cells)."),
    size: int = option(64, POSITIVE_INT, help="Image size in pixels, 32..256."),
    seed: int = option(0, NON_NEGATIVE_INT, help="Random seed; the same seed gives the same data."),
    design: str = typer.Option("iid", help="iid, factorial or correlated."),
    sequences: int = option(0, NON_NEGATIVE_INT, help="Also write this many 4D landmark sequences to sequences.npz."),
    meshes: bool = typer.Option(False, "--meshes", help="Write mesh sequences in the CoMA layout instead of images."),
    subjects: int = option(12, POSITIVE_INT, help="With --meshes: number of subjects."),
    motions: int = option(12, POSITIVE_INT, help="With --meshes: motions per subject (at most 12)."),
    frames: int = option(40, POSITIVE_INT, help="With --meshes: frames per sequence (at least 4)."),
    mesh_size: str = typer.Option("small", help="With --meshes: mesh topology, small or paper."),
):
    """Export world faces in the standard image-folder layout, or (--meshes) world mesh sequences as
    <subject>/<motion>/<motion>.NNNNNN.ply with factors.csv, labels.csv and landmarks.txt."""
    from mien.data.folder import export_samples

    if meshes:
        from mien.data.formats.coma import export_sequences
        from mien.data.world.mesh_data import MeshSequenceDataset

        written = export_sequences(MeshSequenceDataset(subjects, motions, frames, seed, mesh_size), out)
        typer.echo(f"wrote {written} meshes ({subjects} subjects x {motions} motions x {frames} frames) to {out}")
        return

    ds = WorldDataset(None if design == "factorial" and n == 1000 else n, size, seed, design)
    arrays = _sequence_arrays(sequences, seed) if sequences else None
    export_samples(ds.samples(), ds.factors, out, n=len(ds), sequences=arrays)
    typer.echo(f"wrote {len(ds)} faces{f' and {sequences} sequences' if sequences else ''} to {out}")


def _sequence_arrays(n: int, seed: int) -> dict:
    ds = WorldSequenceDataset(n, seed=seed)
    items = [ds[i] for i in range(n)]
    return {"sequences": torch.stack([it["sequence"] for it in items]).numpy(),
            "labels": torch.tensor([it["label"] for it in items]).numpy(),
            "texts": [it["text"] for it in items],
            **{f"factor_{k}": torch.stack([torch.as_tensor(it["factors"][k]) for it in items]).numpy()
               for k in items[0]["factors"]}}


@app.command()
def show(
    source: str = typer.Argument(..., help="A data folder, a mesh folder, or 'world', 'meshes', 'mesh_sequences'."),
    n: int = option(64, POSITIVE_INT, help="Number of images."),
    out: Path = output(Path("grid.png"), folder=False, help="PNG file to write."),
    landmarks: bool = typer.Option(False, "--landmarks", help="Overlay the 68 landmarks."),
    size: int = option(64, POSITIVE_INT, help="Image size for the world (folders: resize to this)."),
    seed: int = option(0, NON_NEGATIVE_INT, help="Seed for the world."),
    scale: int = option(2, POSITIVE_INT, help="Integer upscaling of the grid."),
):
    """Draw a grid of images, optionally with their landmarks; for mesh data a shaded-mesh picture
    (meshes: the mesh world's overview; mesh_sequences: an animation, --out x.gif)."""
    from mien.data.folder import FolderDataset
    from mien.data.formats.coma import is_mesh_folder
    from mien.report.grid import save_grid

    if source in ("meshes", "mesh_sequences") or is_mesh_folder(source):
        from mien.report.mesh_pictures import show_meshes

        typer.echo(f"wrote {show_meshes(source, out, n=n, seed=seed)}")
        return
    if n < 1:
        raise ConfigError(f"--n {n}: draw at least one image")
    if source == "world":
        batch = WorldDataset(n, size, seed).batch(range(n))
    else:
        ds = FolderDataset(source, size=size)
        items = [ds[i] for i in range(min(n, len(ds)))]
        batch = {"image": torch.stack([it["image"] for it in items])}
        if all("landmarks2d" in it for it in items):
            batch["landmarks2d"] = torch.stack([it["landmarks2d"] for it in items])
    if landmarks and "landmarks2d" not in batch:
        raise ConfigError(f"{source} has no landmarks; drop --landmarks or export with landmark columns")
    save_grid(batch["image"], out, landmarks=batch["landmarks2d"] if landmarks else None, scale=scale)
    typer.echo(f"wrote {out}")


@app.command()
def inspect(
    folder: Path = typer.Argument(..., help="A data set folder (CelebA, FFHQ, AffectNet, FER2013 or images)."),
    layout: str = typer.Option("auto", help="auto, celeba, ffhq, affectnet, fer2013, folder or meshes."),
):
    """Say what a data set folder holds: layout, counts, splits, factors, landmarks, problems."""
    from mien.data.formats import describe, open_layout
    from mien.data.formats import coma

    if layout == "meshes" or (layout == "auto" and coma.is_mesh_folder(folder)):
        for line in coma.describe(coma.MeshFolder(folder)):
            typer.echo(line)
        return
    for line in describe(open_layout(folder, layout)):
        typer.echo(line)


@app.command()
def prepare(
    folder: Path = typer.Argument(..., help="A data set folder (see mien data inspect)."),
    out: Path = output(..., help="Folder to write: images/, metadata.csv, factors.json, skipped.csv.", folder=True),
    size: int = option(64, POSITIVE_INT, help="Image size in pixels."),
    layout: str = typer.Option("auto", help="auto, celeba, ffhq, affectnet, fer2013 or folder."),
    align: bool = typer.Option(False, "--align", help="FFHQ-align faces (annotated landmarks, else mediapipe)."),
    workers: int = option(0, NON_NEGATIVE_INT, help="Processes (0: one per CPU core)."),
):
    """Copy a data set into mien's folder layout at one size; rerun the same command to resume."""
    from mien.data.prepare import prepare as run_prepare

    report = run_prepare(folder, out, size=size, layout=layout, align=align, workers=workers or None)
    skipped = ", ".join(f"{n} {reason}" for reason, n in report.skipped.items())
    typer.echo(f"prepared {report.kept} {report.layout} images in {out} ({report.written} processed now, "
               f"{report.reused} from before){f'; skipped {skipped} (listed in skipped.csv)' if skipped else ''}")
