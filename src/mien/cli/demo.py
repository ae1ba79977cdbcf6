"""`mien demo`: the main job (issue 6), run by `make demo`; the stages live in
:mod:`mien.experiments.demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from mien.cli.options import NON_NEGATIVE_INT, option, output


def demo(out: Path = output(Path("out/demo"), folder=True, help="Output folder (index.html and the stage folders)."),
         preset: str = typer.Option("small", help="small: the zoo's models and recipes; tiny: seconds-long "
                                                  "trainings (tests)."),
         seed: int = option(0, NON_NEGATIVE_INT, help="Random seed of the trainings, samples and test faces."),
         train_from_scratch: bool = typer.Option(False, "--train-from-scratch",
                                                 help="Train the small models from their zoo recipes instead of "
                                                      "loading the shipped checkpoints (hours on a 2-core CPU)."),
         progress: bool = typer.Option(True, "--progress/--no-progress", help="Show stage lines and training bars.")):
    """Train or load, read, edit and evaluate face models end to end; write OUT/index.html.
    Interrupted and run again, it reuses every finished stage."""
    from mien.experiments.demo import DemoConfig, run_demo

    cfg = DemoConfig(out=out, preset=preset, seed=seed, train_from_scratch=train_from_scratch, progress=progress)
    if preset == "tiny":
        cfg.n_codes, cfg.per_class, cfg.n_edits, cfg.steps, cfg.edit_sweep = 200, 8, 2, 10, ((500,), (1.0, 4.0))
        cfg.n_gan, cfg.invert_steps = 64, 5
    typer.echo(f"wrote {run_demo(cfg)}")
