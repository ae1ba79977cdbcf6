"""`mien expr4d sample CKPT ...`: plug-and-play generation of 4D expressions (Zou ch. 3, Alg. 1-4)."""

from __future__ import annotations

from pathlib import Path

import typer

from mien.cli.options import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, option, output

app = typer.Typer(help="4D facial expression diffusion (Zou ch. 3): controlled sampling.", no_args_is_help=True)


@app.command()
def sample(
    ckpt: Path = typer.Argument(..., help="Checkpoint folder of `mien train expr4d/<preset>`."),
    label: str = typer.Option(None, help="Expression label (Alg. 1; with --neutral, Alg. 4)."),
    text: str = typer.Option(None, help="Text prompt, e.g. 'from the neutral face to happy' (Alg. 2)."),
    direction: str = typer.Option(None, help="N2E or E2N: sequence type for --label (type-S guidance) and --neutral."),
    neutral: Path = typer.Option(None, help="A neutral face (68 x 3 landmarks, .npy/.npz): geometry-adaptive (Alg. 4)."),
    fill: str = typer.Option(None, help="begin, middle or end: the part to fill around --known frames (Alg. 3)."),
    known: Path = typer.Option(None, help="Known frames (K x 68 x 3, .npy/.npz) for --fill."),
    frames: int = option(40, POSITIVE_INT, help="Sequence length (within the trained range)."),
    n: int = option(4, POSITIVE_INT, "-n", help="Number of sequences."),
    seed: int = option(0, NON_NEGATIVE_INT, help="Random seed."),
    passes: int = option(None, NON_NEGATIVE_INT, help="Harmonisation passes of Alg. 4 (default: the model's, 5)."),
    clip_x0: float = option(None, POSITIVE, help="Clamp each step's predicted x0 to +-this many standard units "
                                             "(default: the model's model.clip_x0)."),
    out: Path = output(Path("expr4d-samples"), folder=True, help="Output folder."),
    video: str = typer.Option("gif", help="Animation format: gif or mp4."),
    size: int = option(64, POSITIVE_INT, help="Pixel size of the rendered animation frames."),
):
    """Write sequences.npz, one animation per sequence and trajectories.png."""
    import torch

    import mien
    from mien.control import expr4d as control
    from mien.errors import ConfigError
    from mien.models.expr4d import Expr4D, label_control, unconditional
    from mien.report.sequences import read_array, write_outputs

    if label is not None and text is not None:
        raise ConfigError("give either --label or --text, not both")
    if (fill is None) != (known is None):
        raise ConfigError("--fill and --known go together: --fill begin|middle|end --known FILE")
    if fill is not None and (neutral is not None or label is not None or text is not None):
        raise ConfigError("--fill completes the --known frames alone; drop --neutral, --label and --text")
    if neutral is not None and text is not None:
        raise ConfigError("--neutral works with --label (or alone), not with --text")
    model = mien.load(ckpt)
    if not isinstance(model, Expr4D):
        raise ConfigError(f"{ckpt} holds a {model.model_name} model; pass a checkpoint trained from an expr4d preset")
    if clip_x0 is not None:
        model.with_sampling(clip_x0=clip_x0)
    g = torch.Generator().manual_seed(seed)
    if fill is not None:
        given, mask = control.place_known(model.check_sequences(read_array(known, "known frames"))[0].cpu(),
                                          frames, fill)
        seqs = control.fill(model, given[None].expand(n, -1, -1, -1), mask, generator=g)
        names = [f"fill {fill}"] * n
    elif neutral is not None:
        seqs = control.geometry_adaptive(model, read_array(neutral, "neutral face"), label, direction or "N2E", frames,
                                         n, generator=g, passes=passes)
        names = [f"{label or 'any'} {direction or 'N2E'}"] * n
    elif text is not None:
        seqs = control.text_control(model, text, n, frames, generator=g)
        names = [text] * n
    elif label is not None:
        seqs = label_control(model, label, n, frames, direction=direction, generator=g)
        names = [label + (f" {direction}" if direction else "")] * n
    else:
        seqs = unconditional(model, n, frames, generator=g)
        names = ["unconditional"] * n
    write_outputs(seqs, out, names, size, video)
    typer.echo(f"{n} sequences of {frames} frames written to {out}")
