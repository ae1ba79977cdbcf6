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
    mesh: Path = typer.Option(None, help="A meshdecoder checkpoint (Z2): also retarget the sequences to --neutral-mesh."),
    neutral_mesh: Path = typer.Option(None, "--neutral-mesh", help="The neutral face mesh (.ply/.obj) on the decoder's topology."),
):
    """Write sequences.npz, one animation per sequence and trajectories.png; with --mesh, mesh animations too."""
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
    if (mesh is None) != (neutral_mesh is None):
        raise ConfigError("--mesh and --neutral-mesh go together: --mesh MESHRUN --neutral-mesh face.ply")
    if mesh is not None and (fill is not None or text is not None or neutral is not None):
        raise ConfigError("--mesh generates from the neutral mesh's own landmarks (Alg. 4); drop --fill, --text and --neutral")
    decoder = None
    if mesh is not None:
        from mien.control.mesh_retarget import mesh_landmarks, neutral_for
        from mien.data.meshio import read_mesh
        from mien.models.mesh import MeshDecoder

        decoder = mien.load(mesh)
        if not isinstance(decoder, MeshDecoder):
            raise ConfigError(f"{mesh} holds a {decoder.model_name} model; pass a checkpoint of meshdecoder/<preset>")
        face = neutral_for(decoder, *read_mesh(neutral_mesh), name=str(neutral_mesh))
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
    elif neutral is not None or decoder is not None:
        given = mesh_landmarks(decoder, face) if decoder is not None else read_array(neutral, "neutral face")
        seqs = control.geometry_adaptive(model, given, label, direction or "N2E", frames, n, generator=g, passes=passes)
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
    if decoder is not None:
        from mien.control.mesh_retarget import retarget
        from mien.report.mesh_sequences import write_mesh_sequences

        meshes, seconds = retarget(decoder, face, seqs.cpu())
        write_mesh_sequences(meshes, decoder.faces, out / "meshes", size=max(size, 128))
        typer.echo(f"mesh animations and .ply frames written to {out / 'meshes'}; "
                   f"decoder time {seconds:.3f} s per sequence of {frames} frames")
