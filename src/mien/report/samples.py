"""The one writer of sample dicts (design.md, Contracts), whatever family drew them: ``image`` as a
PNG grid, ``sequence`` as sequences.npz, one animation per sequence and a trajectory grid, ``mesh``
as a PNG grid of shaded meshes (the topology ``faces`` comes from the model)."""

from __future__ import annotations

from pathlib import Path

from mien.errors import ConfigError


def write_samples(sample: dict, out, labels: list[str] | None = None, nrow: int | None = None,
                  size: int = 64, video: str = "gif", faces=None) -> list[Path]:
    """Write ``sample`` at ``out``: a ``.png`` path for images and meshes (a folder gets
    ``samples.png``), a folder for sequences (``out`` without its suffix); returns the files written."""
    from mien.report.grid import save_grid
    from mien.report.sequences import write_outputs

    out = Path(out)
    if "image" in sample:
        path = out if out.suffix.lower() == ".png" else out / "samples.png"
        return [save_grid(sample["image"], path, scale=2, nrow=nrow, labels=labels)]
    if "mesh" in sample and faces is not None:
        from mien.report.mesh import save_mesh_grid

        path = out if out.suffix.lower() == ".png" else out / "samples.png"
        return [save_mesh_grid(sample["mesh"], faces, path, nrow=nrow, labels=labels, size=max(size, 96))]
    if "sequence" in sample:
        seqs = sample["sequence"]
        names = [name or "" for name in labels] if labels else [""] * len(seqs)
        return write_outputs(seqs, out.with_suffix("") if out.suffix else out, names, size, video)
    raise ConfigError(f"no writer for samples with keys {', '.join(sorted(sample))}; mien writes image, sequence and mesh")
