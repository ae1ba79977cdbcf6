"""The demo's GAN stage (issue 15, item 9): samples, a truncation sweep, a style-mixing grid, one
direction grid per method and inversions of world faces for the StyleGAN of the zoo (or the
``stylegan/tiny`` preset), with fid_mien, precision and recall against world faces."""

from __future__ import annotations

from pathlib import Path

import torch

from mien.models.checkpoint import read_meta, training_world

PSIS = (0.0, 0.25, 0.5, 0.75, 1.0)
BLANK = -1.0  # the empty corner of the style-mixing grid (black)


def _grid(images, path: Path, **kw) -> Path:
    from mien.report.grid import save_grid

    return save_grid(images, path, scale=3, **kw)


def truncation_sweep(model, z: torch.Tensor, noise) -> torch.Tensor:
    """Rows: the faces of ``z``; columns: psi in :data:`PSIS` (Haas Eqs. 2.18-2.19)."""
    ws = model.broadcast(model.map(z))
    return torch.stack([model.synthesize(model.truncate(ws, psi), noise) for psi in PSIS], 1).flatten(0, 1)


def style_mixing(model, z_rows: torch.Tensor, z_cols: torch.Tensor, cut: int) -> torch.Tensor:
    """The StyleGAN figure: the top row are sources B, the left column sources A, and each cell takes
    B's first ``cut`` W+ codes (coarse styles: pose, face shape) and A's others."""
    w_a, w_b = model.broadcast(model.map(z_rows)), model.broadcast(model.map(z_cols))
    noise = model.noise_maps(1, torch.Generator().manual_seed(0))
    fixed = lambda n: [m.expand(n, -1, -1, -1) for m in noise]  # noqa: E731 (same noise everywhere)
    a, b = model.synthesize(w_a, fixed(len(z_rows))), model.synthesize(w_b, fixed(len(z_cols)))
    rows = [torch.cat([torch.full_like(b[:1], BLANK), b])]
    for i in range(len(z_rows)):
        mixed = torch.cat([w_b[:, :cut], w_a[i:i + 1, cut:].expand(len(z_cols), -1, -1)], 1)
        rows.append(torch.cat([a[i:i + 1], model.synthesize(mixed, fixed(len(z_cols)))]))
    return torch.cat(rows)


@torch.no_grad()
def gan_stage(ckpt: Path, folder: Path, seed: int = 0, n_fid: int = 500) -> dict:
    """Pictures and numbers of the demo's GAN; ``n_fid`` generated and world faces for the scores."""
    import mien
    from mien.evaluator import evaluator_for
    from mien.metrics import fid, pr

    model = mien.load(ckpt)
    g = torch.Generator().manual_seed(seed)
    _grid(model.sample(32, generator=g)["image"], folder / "samples.png", nrow=8)
    z = model.draw_z(6, g)[0]
    noise = [m.expand(6, -1, -1, -1) for m in model.noise_maps(1, g)]
    _grid(truncation_sweep(model, z, noise).clamp(-1, 1), folder / "truncation.png", nrow=len(PSIS),
          labels=[f"psi {p}" for p in PSIS] + [""] * (5 * len(PSIS)))
    cut = max(1, model.config.num_ws // 4)
    _grid(style_mixing(model, model.draw_z(4, g)[0], model.draw_z(6, g)[0], cut).clamp(-1, 1),
          folder / "style_mixing.png", nrow=7)
    ev = evaluator_for(model.config.image_size)
    gen = torch.cat([model.sample(n, generator=g)["image"] for n in chunks(n_fid, 250)])
    ref = training_world(ckpt, n_fid, seed + 4242).batch(range(n_fid))["image"]
    fg, fr = fid.image_features(gen, ev), fid.image_features(ref, ev)
    scores = {"fid_mien": fid.fid_from_features(fg, fr), **pr.precision_recall(fg, fr)}
    return {"model": model.model_name, "steps": read_meta(ckpt).get("steps"), "n": n_fid, "mixing_cut": cut,
            "metrics": scores}


def chunks(n: int, size: int) -> list[int]:
    """n split into batches of at most ``size``."""
    return [size] * (n // size) + ([n % size] if n % size else [])
