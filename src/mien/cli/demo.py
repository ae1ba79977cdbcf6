"""`mien demo`: the main job. Until the model stages land it renders and exports a world sample."""

from __future__ import annotations

from pathlib import Path

import torch
import typer


def demo(out: Path = typer.Option(Path("out/demo"), help="Output folder."),
         seed: int = typer.Option(0, help="Random seed.")):
    """Render a sample of the procedural face world: a grid per expression and attribute, and an export."""
    from mien.data.folder import export_samples
    from mien.data.world import EXPRESSIONS, WorldDataset
    from mien.report.grid import save_grid

    ds = WorldDataset(256, 64, seed)
    save_grid(ds.batch(range(64))["image"], out / "world.png", scale=2)
    save_grid(ds.batch(range(64))["image"], out / "world_landmarks.png", scale=2,
              landmarks=ds.batch(range(64))["landmarks2d"])
    tour = WorldDataset(8 * 8, 64, seed, fixed={"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "intensity": 1.0})
    f = tour.draw(range(64))
    f["expression"] = torch.arange(8).repeat(8)
    from mien.data.world import render_faces

    images = render_faces(f, 64)[0]
    save_grid(images, out / "expressions.png", nrow=8, scale=2, labels=[EXPRESSIONS[i] for i in f["expression"]])
    export_samples(ds.samples(), ds.factors, out / "data", n=len(ds))
    typer.echo(f"wrote {out}/world.png, {out}/expressions.png and the data set {out}/data")
