"""`mien demo`: the main job. Until the model stages land it renders a tour of the world and
exports a sample data set."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import typer


def world_tour(seed: int = 0, size: int = 64) -> tuple[torch.Tensor, list[str]]:
    """Four labelled rows of one face each: the 8 expressions, the attributes and hair styles,
    a yaw sweep and an age sweep."""
    from mien.data.world import EXPRESSIONS, WorldDataset, render_faces

    frontal = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "glasses": 0, "beard": 0, "hat": 0, "intensity": 1.0,
               "expression": "neutral", "hair_style": "short", "age": 0.2}
    ds = WorldDataset(32, size, seed, fixed=frontal)
    f = ds.draw([0] * 8 + [1] * 8 + [2] * 8 + [3] * 8)
    f["expression"][:8] = torch.arange(8)
    labels = list(EXPRESSIONS)
    edits = [({}, "plain"), ({"glasses": 1, "glasses_shape": 0}, "round glasses"),
             ({"glasses": 1, "glasses_shape": 1}, "square glasses"), ({"beard": 1}, "beard"),
             ({"hat": 1}, "hat"), ({"hair_style": 1}, "long hair"), ({"hair_style": 2}, "fringe"),
             ({"hair_style": 3}, "bald")]
    for j, (values, name) in enumerate(edits):
        for k, v in values.items():
            f[k][8 + j] = v
        labels.append(name)
    for j, yaw in enumerate(torch.linspace(-35, 35, 8)):
        f["yaw"][16 + j] = yaw
        labels.append(f"yaw {yaw:+.0f}")
    for j, age in enumerate(torch.linspace(0, 1, 8)):
        f["age"][24 + j] = age
        labels.append(f"age {age:.2f}")
    return render_faces(f, size)[0], labels


def demo(out: Path = typer.Option(Path("out/demo"), help="Output folder."),
         seed: int = typer.Option(0, help="Random seed.")):
    """Render a tour of the procedural face world and export a sample data set."""
    from mien.data.folder import export_samples
    from mien.data.world import WorldDataset
    from mien.report.grid import save_grid

    start = time.perf_counter()
    images, labels = world_tour(seed)
    save_grid(images, out / "tour.png", nrow=8, scale=2, labels=labels)
    ds = WorldDataset(256, 64, seed)
    batch = ds.batch(range(64))
    save_grid(batch["image"], out / "world.png", scale=2)
    save_grid(batch["image"], out / "world_landmarks.png", scale=2, landmarks=batch["landmarks2d"])
    export_samples(ds.samples(), ds.factors, out / "data", n=len(ds))
    typer.echo(f"wrote {out}/tour.png, {out}/world.png, {out}/world_landmarks.png and the data set "
               f"{out}/data in {time.perf_counter() - start:.1f} s")
