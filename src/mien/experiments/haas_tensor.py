"""`mien reproduce haas-tensor` (issue 16, H1 tables): the multilinear model of GAN latents of Haas
Papers I-II (digest §2.1, §3.2) on a GAN checkpoint and mien's world, where every cell of the
crossed grid and the exact frontal face exist.

1. P-II Table 1: reconstruction error ||w^ - w||^2 of the rank-one estimator (ALS) and the full-rank
   relaxation (P-II Eq. 8), on random latents (W+ codes of sampled z) and on world-grid latents
   (inverted faces of held-out persons), the model fitted on the other persons (P-II layout, centring).
2. P-II Table 2: frontalisation of an FEI-like world set (neutral faces over a yaw series; the exact
   frontal face is rendered): the yaw direction of the tensor model (Eqs. 16-18) against
   InterFaceGAN's (yaw scored by the evaluator on sampled faces), both calibrated the same way
   (strength = -true yaw / the evaluator-measured yaw slope of the direction on sampled faces),
   scored by lpips_mien and 1 - csim_mien against the exact frontal face (mean +- s.e.m.).
3. P-I transfer errors eps_approx, eps_expr, eps_rot (held-out persons, P-I layout) of the single and
   the stacked per-style model, standardised (P-I) and centred (P-II), against the "copy" baseline.
4. The expression-classifier check (P-II §3): the evaluator's expression head on raw world faces
   and on expression-transferred faces (the confusion P-II reads from Py-Feat on BU-3DFE).
5. Planted ground truth: the global emotion directions against the planted ones (cosine), and the
   apathy point (P-I §IV-C) against the planted c0, on :func:`planted_tensor` grids with noise.

Departures: the world's views are yaw angles (+-20 degrees) of one renderer, not BU-3DFE's two
cameras; lpips_mien and csim_mien replace LPIPS and ArcFace; the frontalisation strength uses the
world's exact yaw of the source (FEI's yaw series is known too) and one calibration per direction.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from mien.control import gan_directions as gd
from mien.control.tensor_grid import GridSpec, drop_neutral, grid_tensor, inverted_grid
from mien.control.tensor_model import TensorModel, apathy_point, planted_tensor
from mien.control.tensor_stack import StackedTensorModel, transfer_errors
from mien.errors import ConfigError
from mien.experiments.gan_directions import _progress
from mien.io import atomic_write_text, ensure_writable_dir


@dataclass
class Preset:
    """Sizes: the grid (``grid``), held-out persons, random latents, FEI persons and yaws,
    sampled faces for InterFaceGAN and the calibration, planted-tensor persons."""

    grid: GridSpec
    test_persons: int
    n_random: int
    fei_persons: int
    fei_yaws: tuple
    n_fit: int
    n_calibrate: int
    planted_persons: int


PRESETS = {
    "tiny": Preset(GridSpec(persons=3, layout="p1", emotions=("happy", "sad"), intensities=(0.5, 1.0), steps=10,
                            batch=32), test_persons=1, n_random=8, fei_persons=2, fei_yaws=(-20.0, 0.0, 20.0),
                   n_fit=200, n_calibrate=4, planted_persons=4),
    "small": Preset(GridSpec(persons=12, layout="p1", steps=100, batch=50), test_persons=2, n_random=200,
                    fei_persons=8, fei_yaws=(-20.0, -10.0, 0.0, 10.0, 20.0), n_fit=2000, n_calibrate=32,
                    planted_persons=12),
}
MODELS = (("single", "centre"), ("single", "standardise"), ("stacked", "standardise"), ("stacked", "centre"))


def _noise(model, n: int, seed: int):
    """One fixed noise map per layer shared by all n faces (what every picture is rendered with)."""
    return [m.expand(n, -1, -1, -1) for m in model.noise_maps(1, torch.Generator().manual_seed(seed))]


@torch.no_grad()
def _render(model, codes: torch.Tensor, seed: int = 0) -> torch.Tensor:
    codes = codes.float().reshape(len(codes), model.config.num_ws, model.config.w_dim)
    return model.synthesize(codes, _noise(model, len(codes), seed)).clamp(-1, 1)


def _stats(values: torch.Tensor) -> dict:
    values = values.double().flatten()
    return {"mean": float(values.mean()), "std": float(values.std()) if len(values) > 1 else 0.0,
            "sem": float(values.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0}


def table1(grid2: torch.Tensor, modes2, latent, train, test, random_codes) -> tuple[dict, TensorModel]:
    """P-II Table 1: rank-one and full-rank ||w^ - w||^2 on random and held-out grid latents (and
    the centred P-II model, fitted on the training persons)."""
    model = TensorModel("centre").fit(grid2[:, train], modes2, latent)
    held = grid2[:, test].reshape(grid2.shape[0], -1).T
    out = {}
    for name, codes in (("random", random_codes.double().flatten(1)), ("grid", held)):
        rank_one = model.approximation_error(codes)
        full = (model.inverse_transform_full_rank(model.transform_full_rank(codes)).flatten(1) - codes).pow(2).sum(1)
        out[name] = {"rank_one": _stats(rank_one), "full_rank": _stats(full)}
    return out, model


@torch.no_grad()
def _yaw_slope(model, ev, ws: torch.Tensor, vector: torch.Tensor, unit: float) -> float:
    """Evaluator-measured yaw (degrees) per unit strength of a W+ ``vector`` (one unit: ``unit``)."""
    alphas = torch.tensor([-1.0, 0.0, 1.0])
    imgs = torch.cat([_render(model, ws + a * unit * vector) for a in alphas])
    yaw = ev.pose_degrees(ev(imgs)["pose"])[:, 0].reshape(len(alphas), -1).mean(1).double()
    return float((alphas.double() * (yaw - yaw.mean())).sum() / (alphas.double() ** 2).sum())


@torch.no_grad()
def table2(model, ev, fei, directions: dict, pool_w: torch.Tensor, calibrate_ws: torch.Tensor,
           yaws) -> tuple[dict, torch.Tensor]:
    """P-II Table 2 rows {method: lpips/identity stats} and the picture (persons x columns)."""
    from mien.metrics.image import lpips_mien

    persons, views = fei["codes"].shape[0] // len(yaws), len(yaws)
    codes = fei["codes"].reshape(persons, views, *fei["codes"].shape[1:]).double()
    truth = fei["images"].reshape(persons, views, *fei["images"].shape[1:])
    front = yaws.index(0.0)
    sources = [v for v in range(views) if v != front]
    src = codes[:, sources].flatten(0, 1)
    target = truth[:, [front] * len(sources)].flatten(0, 1)
    true_yaw = torch.tensor([yaws[v] for v in sources], dtype=torch.float64).repeat(persons)
    edited = {"no edit": src, "inversion of the frontal face": codes[:, [front] * len(sources)].flatten(0, 1)}
    for name, vector in directions.items():
        v = vector.double().reshape(1, *src.shape[1:])
        v = v / v.norm()
        unit = float((pool_w.double() @ v[0].sum(0)).std())  # std of sampled (broadcast) w along v
        slope = _yaw_slope(model, ev, calibrate_ws.double(), v, unit)
        edited[name] = src - (true_yaw / slope).reshape(-1, 1, 1) * unit * v
    rows, pictures = {}, [truth[:, sources[0]], truth[:, front]]
    for name, w in edited.items():
        images = _render(model, w)
        ident = (ev(images)["identity"] * ev(target)["identity"]).sum(1)
        rows[name] = {"lpips_mien": _stats(lpips_mien(images, target, ev, per_image=True)),
                      "one_minus_csim": _stats(1 - ident)}
        pictures.append(images.reshape(persons, len(sources), *images.shape[1:])[:, 0])
    return rows, torch.stack(pictures, 1).flatten(0, 1)


def transfer_table(grid1, modes1, latent, train, test) -> tuple[dict, dict]:
    """P-I transfer errors of each (single | stacked, centre | standardise) model on held-out persons."""
    rows, fitted = {}, {}
    for kind, normalise in MODELS:
        model = StackedTensorModel(kind == "stacked", normalise=normalise).fit(grid1[:, train], modes1, latent)
        rows[f"{kind} / {normalise}"] = transfer_errors(model, grid1[:, test], modes1[1], modes1[-1])
        fitted[(kind, normalise)] = model
    return rows, fitted


@torch.no_grad()
def confusion(ev, images: torch.Tensor, labels: torch.Tensor, names) -> list[list[float]]:
    """Row e: the share of faces of emotion names[e] the evaluator puts in each expression class."""
    pred = ev(images)["expression"].argmax(1)
    classes = ev.expression_names
    return [[float((pred[labels == e] == c).float().mean()) for c in range(len(classes))] for e in range(len(names))]


@torch.no_grad()
def expression_check(model, ev, grid, stacked, grid1, spec: GridSpec, test) -> tuple[dict, torch.Tensor]:
    """Confusions of the raw world faces (strongest intensity) and of expression transfer from each
    held-out person's neutral face (by the P-I model ``stacked``) onto each emotion at the strongest
    intensity."""
    d, persons, cells, views = grid1.shape
    strongest = [1 + e * len(spec.intensities) + len(spec.intensities) - 1 for e in range(len(spec.emotions))]
    images = grid["images"].reshape(persons, cells, views, *grid["images"].shape[1:])
    raw = images[:, strongest].permute(1, 0, 2, 3, 4, 5).flatten(0, 2)
    labels = torch.arange(len(spec.emotions)).repeat_interleave(persons * views)
    neutral = grid1[:, test, 0].permute(1, 2, 0).reshape(-1, *stacked.latent_shape_)
    params = stacked.transform(neutral)
    eye = torch.eye(cells, dtype=torch.float64)
    moved = [_render(model, stacked.inverse_transform(stacked.replace(params, "expression", eye[c]))) for c in strongest]
    edited = torch.cat(moved)
    edit_labels = torch.arange(len(spec.emotions)).repeat_interleave(len(neutral))
    truth = images[test][:, strongest].permute(1, 0, 2, 3, 4, 5).flatten(0, 2)
    picture = torch.cat([_render(model, neutral)[:1], truth[::len(neutral)], edited[::len(neutral)]])
    return {"raw": confusion(ev, raw, labels, spec.emotions),
            "transferred": confusion(ev, edited, edit_labels, spec.emotions)}, picture


def planted_recovery(persons: int, seed: int) -> dict:
    """Global emotion directions (P-II Eqs. 13-15) against the planted ones, G x a_bar x d_e x v_bar
    (cosine), and the apathy point of the expression factor's rows (P-I layout, rank 8) against the
    image of the planted c0 under the affine map from planted expression codes to those rows."""
    t, truth = planted_tensor(persons=persons, apathy=1.0, noise=0.05, seed=seed)
    modes = ["identity", "expression", "intensity", "yaw"]
    found = TensorModel("centre").fit(t, modes).global_directions()["emotions"]
    planted = torch.einsum("dakv,a,ek,v->ed", truth["core"], truth["identity"].mean(0), truth["directions"],
                           truth["view"].mean(0))
    cos = torch.nn.functional.cosine_similarity(found, planted, dim=1)
    g = torch.Generator().manual_seed(seed + 1)
    neutral = torch.randn(1, truth["directions"].shape[1], generator=g, dtype=torch.float64)
    codes = torch.cat([neutral, (truth["apathy"] + truth["levels"][None, :, None]
                                 * truth["directions"][:, None, :]).reshape(-1, neutral.shape[1])])
    grid = truth["mean"][:, None, None, None] + torch.einsum("dakv,pa,ck,rv->dpcr", truth["core"], truth["identity"],
                                                             codes, truth["view"])
    grid = grid + 0.05 * torch.randn(grid.shape, generator=g, dtype=torch.float64)
    rows = TensorModel(ranks=[None, 8, None]).fit(grid, ["identity", "expression", "yaw"]).factors_[1]
    levels = len(truth["levels"])
    groups = [[1 + levels * e + i for i in range(levels)] for e in range(len(truth["directions"]))]
    point = apathy_point(rows, groups)
    affine = torch.cat([codes, torch.ones(len(codes), 1, dtype=torch.float64)], 1)
    image_c0 = torch.cat([truth["apathy"], torch.ones(1, dtype=torch.float64)]) @ torch.linalg.lstsq(affine, rows).solution
    spread = float((rows - rows.mean(0)).norm(dim=1).mean())
    return {"direction_cosine_mean": float(cos.mean()), "direction_cosine_min": float(cos.min()),
            "apathy_error": float((point - image_c0).norm()) / spread,
            "apathy_to_neutral": float((point - rows[0]).norm()) / spread,
            "apathy_to_mean": float((point - rows.mean(0)).norm()) / spread}


def world_apathy(model: StackedTensorModel, spec: GridSpec) -> dict:
    """The apathy point of the world-grid model's expression rows truncated to 3 dims (P-I §IV-C):
    its distance to the neutral row and to the mean row, over the rows' mean spread."""
    m = model.models_[0]
    rows = m.factors_[m.mode_index("expression") - 1][:, :3]
    levels = len(spec.intensities)
    if len(spec.emotions) < 2 or levels < 2:
        return {}
    point = apathy_point(rows, [[1 + levels * e + i for i in range(levels)] for e in range(len(spec.emotions))])
    spread = float((rows - rows.mean(0)).norm(dim=1).mean())
    return {"apathy_to_neutral": float((point - rows[0]).norm()) / spread,
            "apathy_to_mean": float((point - rows.mean(0)).norm()) / spread}


def default_checkpoint() -> Path:
    from mien.experiments.gan_directions import default_checkpoint as zoo_gan

    return zoo_gan()


def reproduce(ckpt, out, preset: str = "small", seed: int = 0, progress: bool = True) -> Path:
    """Run the study on the GAN ``ckpt`` (default: the zoo GAN); write ``haas-tensor.md``,
    ``results.json`` and ``grids/`` under ``out`` (the inverted grids are cached in ``out/cache``)."""
    import mien
    from mien.control.direction import check_space
    from mien.evaluator import evaluator_for
    from mien.report.grid import save_grid

    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p, out, start = PRESETS[preset], ensure_writable_dir(out), time.time()
    ckpt = Path(ckpt) if ckpt is not None else default_checkpoint()
    model = mien.load(ckpt).eval()
    check_space(model, "w")
    size = model.config.image_size
    ev = evaluator_for(size).eval()
    spec = replace(p.grid, seed=seed)
    fei_spec = replace(p.grid, persons=p.fei_persons, emotions=(), views=p.fei_yaws, seed=seed + 1000)
    faces = (spec.persons * (1 + len(spec.emotions) * len(spec.intensities)) * len(spec.views),
             p.fei_persons * len(p.fei_yaws))
    with _progress(progress, sum(math.ceil(n / spec.batch) for n in faces)) as advance:
        grid = inverted_grid(model, ckpt, spec, out / "cache" / "grid", on_batch=advance)
        fei = inverted_grid(model, ckpt, fei_spec, out / "cache" / "fei", on_batch=advance)
    grid1, modes1, latent = grid_tensor(grid["codes"], grid["dataset"])
    grid2, modes2 = drop_neutral(grid1, spec, size)
    persons = grid1.shape[1]
    train, test = list(range(persons - p.test_persons)), list(range(persons - p.test_persons, persons))
    gen = torch.Generator().manual_seed(seed)
    random = gd.sample_codes(model, p.n_random, gen)["w+"]
    pool = gd.sample_codes(model, p.n_fit, gen, images=True)
    t1, tensor_model = table1(grid2, modes2, latent, train, test, random)
    found = tensor_model.directions(expression=modes2[1], intensity=modes2[2], view=modes2[3],
                                    names=list(spec.emotions))
    yaw_scores = ev.pose_degrees(ev(pool["image"])["pose"])[:, 0]
    ifg = gd.InterFaceGAN("w", ratio=0.1 if preset == "tiny" else 0.02, factor="yaw", seed=seed).fit(pool["w"], yaw_scores)
    yaw_dirs = {"InterFaceGAN": ifg.direction_.vectors.reshape(1, -1).expand(model.config.num_ws, -1),
                "TensorGAN": found["yaw"].vectors[0]}
    calibrate = gd.sample_codes(model, p.n_calibrate, gen)["w+"]
    t2, front_picture = table2(model, ev, fei, yaw_dirs, pool["w"], calibrate, list(p.fei_yaws))
    transfer, fitted = transfer_table(grid1, modes1, latent, train, test)
    best = min(fitted, key=lambda k: transfer[f"{k[0]} / {k[1]}"]["eps_expr"])  # the model that transfers best
    expr, expr_picture = expression_check(model, ev, grid, fitted[best], grid1, spec, test)
    expr["model"] = " / ".join(best)
    planted = planted_recovery(p.planted_persons, seed)
    apathy = world_apathy(fitted[("single", "standardise")], spec)
    grids = out / "grids"
    names = list(spec.emotions)
    columns = ["source", "frontal", "no edit", "inv front", "IFGAN", "Tensor"]
    save_grid(front_picture, grids / "frontalisation.png", nrow=2 + len(t2), scale=3,
              labels=columns + [""] * (len(front_picture) - len(columns)))
    save_grid(expr_picture, grids / "expression_transfer.png", nrow=1 + len(names), scale=3,
              labels=["neutral"] + names + [f"->{n}" for n in names])
    faces = calibrate[:4].double()
    q4 = float(tensor_model.global_directions(modes2[1], modes2[2], modes2[3])["intensity_factor"][-1])
    rows = [_render(model, faces)] + [_render(model, faces + q4 * found[n].vectors.double()) for n in names]
    save_grid(torch.stack(rows, 1).flatten(0, 1), grids / "global_directions.png", nrow=1 + len(names), scale=3)
    results = {"checkpoint": str(ckpt), "preset": preset, "seed": seed, "table1": t1, "table2": t2,
               "transfer": transfer, "expression": expr, "expression_names": list(ev.expression_names),
               "emotions": names, "planted": planted, "world_apathy": apathy,
               "inversion_lpips_mien": float(grid["lpips"].mean()), "seconds": time.time() - start}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    path = out / "haas-tensor.md"
    atomic_write_text(path, _markdown(results, p, spec))
    return path


def _pm(stats: dict, digits: int = 3) -> str:
    return f"{stats['mean']:.{digits}g} ± {stats['std']:.2g}"


def _markdown(r: dict, p: Preset, spec: GridSpec) -> str:
    t1, t2, names, classes = r["table1"], r["table2"], r["emotions"], r["expression_names"]
    cells = 1 + len(spec.emotions) * len(spec.intensities)
    lines = ["## Haas Papers I-II: the tensor model of GAN latents on the world", "",
             f"Checkpoint `{r['checkpoint']}`, preset {r['preset']}, seed {r['seed']}. World grid: {spec.persons} "
             f"persons x {cells} expression cells (neutral + {len(spec.emotions)} emotions x {len(spec.intensities)} "
             f"intensities) x {len(spec.views)} views (yaw {', '.join(f'{v:g}' for v in spec.views)}), each face "
             f"inverted into W+ ({spec.steps} optimisation steps; mean lpips_mien of the inversions "
             f"{r['inversion_lpips_mien']:.3g}); models fitted on {spec.persons - p.test_persons} persons, "
             f"scored on the {p.test_persons} held out.", "",
             "### P-II Table 1: reconstruction error ||w^ - w||^2 (mean ± std)", "",
             f"| | random latents ({p.n_random}) | world-grid latents (held out) |", "|---|---|---|"]
    for key, label in (("rank_one", "rank one (ALS)"), ("full_rank", "full rank (lstsq)")):
        lines.append(f"| {label} | {_pm(t1['random'][key])} | {_pm(t1['grid'][key])} |")
    lines += ["", "Thesis (BU-3DFE, 9216-d): rank one 1200 ± 300 vs 170 ± 20; full rank 600 ± 100 vs 7 ± 1.", "",
              f"### P-II Table 2: frontalisation of an FEI-like world set ({p.fei_persons} persons, yaw "
              f"{', '.join(f'{v:g}' for v in p.fei_yaws)}), against the exact frontal face (mean ± s.e.m.)", "",
              "| | lpips_mien | 1 - csim_mien |", "|---|---|---|"]
    for name, row in t2.items():
        lines.append(f"| {name} | {row['lpips_mien']['mean']:.3g} ± {row['lpips_mien']['sem']:.2g} | "
                     f"{row['one_minus_csim']['mean']:.3g} ± {row['one_minus_csim']['sem']:.2g} |")
    lines += ["", "Thesis (FEI, LPIPS / ArcFace): InterFaceGAN 0.315 / 0.402, TensorGAN 0.305 / 0.372. Strength of "
              "each direction: minus the source's true yaw over the direction's evaluator-measured yaw slope on "
              f"{p.n_calibrate} sampled faces.", "",
              "### P-I transfer errors on held-out persons (mean squared error in W+)", "",
              "| model / normalisation | eps_approx | eps_expr | eps_expr copy | eps_rot | eps_rot copy |",
              "|---|---|---|---|---|---|"]
    for name, row in r["transfer"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.4g}" for k in ("eps_approx", "eps_expr", "eps_expr_copy",
                                                                        "eps_rot", "eps_rot_copy")) + " |")
    lines += ["", "eps_expr: every source cell to every other expression cell (one-hot of the target cell); eps_rot: "
              "view 1 -> view 2 with gamma = 1; copy: the source code left unchanged.", "",
              "### Expression-classifier check (evaluator expression head; rows: true or target emotion, "
              "strongest intensity)", ""]
    for key, title in (("raw", "raw world faces"), ("transferred", "transferred from the held-out persons' neutral "
                                                                   f"faces ({r['expression']['model']} model, the "
                                                                   "lowest eps_expr)")):
        lines += [f"{title}:", "", "| | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
        lines += [f"| {n} | " + " | ".join(f"{v:.2f}" for v in row) + " |" for n, row in zip(names, r["expression"][key])]
        lines.append("")
    pl = r["planted"]
    lines += ["### Planted ground truth", "",
              f"Global emotion directions vs the planted ones: cosine mean {pl['direction_cosine_mean']:.3f}, "
              f"min {pl['direction_cosine_min']:.3f}. Apathy point (P-I layout, rank 8, noise 0.05): error "
              f"{pl['apathy_error']:.3g}, distance to the neutral row {pl['apathy_to_neutral']:.3g}, to the mean row "
              f"{pl['apathy_to_mean']:.3g} (all over the rows' mean spread)."]
    if r["world_apathy"]:
        wa = r["world_apathy"]
        lines.append(f"World grid (expression rows truncated to 3 dims): apathy point at {wa['apathy_to_neutral']:.3g} "
                     f"from the neutral row and {wa['apathy_to_mean']:.3g} from the mean row.")
    lines += ["", "Pictures: grids/frontalisation.png (source, exact frontal, no edit, inverted frontal, InterFaceGAN, "
              "TensorGAN), grids/expression_transfer.png (neutral, world truth per emotion; transferred), "
              "grids/global_directions.png (sampled faces + each P-II emotion direction at q4 = u~_last).",
              f"Run time {r['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"
