"""The demo's GAN stage (issue 15, item 9): samples, a truncation sweep, a style-mixing grid, one
direction grid per method (InterFaceGAN on yaw, the first GANSpace component, the first SeFa
eigenvector of the coarse layers) and optimisation inversions of world faces for the StyleGAN of
the zoo (or the ``stylegan/tiny`` preset), with fid_mien, precision and recall against world
faces."""

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


STRENGTHS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


def direction_grids(model, ev, folder: Path, seed: int, n: int) -> list[tuple[str, str]]:
    """One grid per method (rows: 4 generated faces; columns: :data:`STRENGTHS` in units of the std
    of sampled w along the direction); InterFaceGAN from ``n`` faces scored for yaw."""
    from mien.control.direction import Direction, traverse
    from mien.control.gan_directions import SeFa, FactorMeter, GANSpace, fit_interfacegan, sample_codes

    g = torch.Generator().manual_seed(seed + 99)
    pool = sample_codes(model, max(n, 64), g)
    coarse = list(range(max(1, model.config.num_ws // 2)))
    found = {"interfacegan": (fit_interfacegan(model, FactorMeter(ev), "yaw", n=n, seed=seed).direction_,
                              "InterFaceGAN: yaw (SVM on evaluator-scored faces)"),
             "ganspace": (GANSpace(k=1).fit(pool["w"]).direction_, "GANSpace: first principal component of W"),
             "sefa": (SeFa(k=1, layers=coarse).fit(model).direction_,
                      f"SeFa: first eigenvector of W+ layers 0-{coarse[-1]}")}
    faces = sample_codes(model, 4, g)["w+"]
    noise = [m.expand(4 * len(STRENGTHS), -1, -1, -1) for m in model.noise_maps(1, g)]
    pictures = []
    for name, (direction, what) in found.items():
        v = direction.vectors[:1]
        spread = float((pool["w"] @ (v[0] / v[0].norm())).std())
        unit = Direction("w", v / v.norm() * spread, direction.layers, provenance=direction.provenance)
        images = traverse(model, faces, unit, list(STRENGTHS), noise=noise)
        _grid(images, folder / f"direction_{name}.png", nrow=len(STRENGTHS),
              labels=[f"{a:+g} sd" for a in STRENGTHS] + [""] * (3 * len(STRENGTHS)))
        pictures.append((f"direction_{name}.png", f"{what}; columns -3 to +3 std of sampled w along it"))
    return pictures


def inversions(model, ckpt: Path, folder: Path, seed: int, steps: int) -> dict:
    """Optimisation inversion of 8 world faces into W+ (Haas Eq. 2.20): input row over reconstructions."""
    from mien.control.gan_invert import optimise

    x = training_world(ckpt, 8, seed + 5151).batch(range(8))["image"]
    with torch.enable_grad():
        result = optimise(model, x, space="w+", steps=steps, generator=torch.Generator().manual_seed(seed))
    _grid(torch.cat([x, result.images]), folder / "inversions.png", nrow=8)
    return {"steps": steps, "lpips_mien": float(result.lpips.mean()), "mse": float(result.mse.mean())}


@torch.no_grad()
def gan_stage(ckpt: Path, folder: Path, seed: int = 0, n_fid: int = 500, n_directions: int = 1000,
              invert_steps: int = 200) -> dict:
    """Pictures and numbers of the demo's GAN; ``n_fid`` generated and world faces for the scores,
    ``n_directions`` scored faces for InterFaceGAN, ``invert_steps`` optimisation steps."""
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
    pictures = direction_grids(model, ev, folder, seed, n_directions)
    inverted = inversions(model, ckpt, folder, seed, invert_steps)
    pictures.append(("inversions.png", f"world faces (top) and their W+ optimisation inversions ({invert_steps} "
                                       f"steps, lpips_mien {inverted['lpips_mien']:.3f})"))
    return {"model": model.model_name, "steps": read_meta(ckpt).get("steps"), "n": n_fid, "mixing_cut": cut,
            "metrics": scores, "inversion": inverted, "pictures": pictures}


def chunks(n: int, size: int) -> list[int]:
    """n split into batches of at most ``size``."""
    return [size] * (n // size) + ([n % size] if n % size else [])
