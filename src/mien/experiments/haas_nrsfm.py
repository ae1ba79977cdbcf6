"""`mien reproduce haas-nrsfm` (issue 16 part H2 item 7): rank-one NRSfM control of the zoo GAN.

1. P-III Table 1 (Haas digest §3.3) for Z, W and W+, each with the gradient editor (Eq. 15, identity
   term lambda_ID = 0.01 as in the evaluation) and the linear editor (Eq. 14; also damped): L_L(w), L_L(w_edit),
   L_phi, L_R, L_ID (P-III Eqs. 16-18) on held-out generated faces, each edited to a yaw change drawn
   from +-U(5, 20) degrees. Landmark losses are per point (mean squared 2-D distance in [0, 1]
   image units, :func:`~mien.control.nrsfm.regressor.landmark_loss`), L_phi is ||phi(w_edit) -
   q_edit||^2 in q's units, L_ID = 1 - cosine of the evaluator's identity embeddings (csim_mien's).
   Departures: the thesis uses Dlib landmarks, ArcFace, 1000 latents and 5 x 10^4 faces; here the
   evaluator's landmark and identity heads and the preset's sizes. The thesis does not say which
   edits Table 1 uses; yaw edits are used here.
2. What the thesis could not measure: recovered rotations against the world's exact yaw, pitch and
   roll of world renders (after one global Procrustes alignment), from the exact landmarks and from
   psi_L (the evaluator's landmarks of the 32 px renders), for each metric upgrade; and ALS against
   the gradient fit on the GAN's landmarks (the coefficients' size and what a turn does to R(q)).
3. A +15 degree yaw edit of the same generated faces by NRSfM (phi in W, both editors) against
   InterFaceGAN's yaw normal and the GANSpace component that moves yaw most, each direction's strength
   calibrated on these faces so that its mean measured yaw change is the target (favouring the
   directions), scored by the evaluator's pose and identity (csim_mien) and lpips_mien.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mien.control import gan_directions as gd
from mien.control.nrsfm import RankOneNRSfM, project_to_rotation
from mien.control.nrsfm import editors as ed
from mien.control.nrsfm.gan import NRSfMControl, generated_faces, renderer
from mien.control.nrsfm.factorise import METRICS
from mien.control.nrsfm.regressor import SPACES, landmark_loss
from mien.errors import ConfigError
from mien.io import atomic_write_text, ensure_writable_dir

THESIS = {("z", "gradient"): (0.037, 0.094, 0.029, 0.123, 0.190), ("w", "gradient"): (0.006, 0.026, 0.024, 0.057, 0.331),
          ("w+", "gradient"): (0.008, 0.036, 0.058, 0.181, 0.019)}  # sg2 rows of P-III Table 1 (digest §3.3)
EDITORS = ("gradient", "linear", "linear, damped")
DAMPING = 0.1  # lambda of the damped J^+, relative to the mean eigenvalue of J J^T
COLUMNS = ("L_L(w)", "L_L(w_edit)", "L_phi", "L_R", "L_ID")


@dataclass
class Preset:
    """Sizes: faces factorised, bases K, phi's Adam steps, faces of Table 1, editor steps, world
    renders, faces of the yaw comparison, codes the directions are fitted on, GANSpace components,
    Adam steps of the rank-one fit (Eq. 10)."""

    n_fit: int
    bases: int
    steps: int
    n_eval: int
    edit_steps: int
    n_world: int
    m: int
    n_dir: int
    k: int
    nrsfm_steps: int


PRESETS = {"tiny": Preset(n_fit=96, bases=2, steps=10, n_eval=3, edit_steps=3, n_world=24, m=2, n_dir=64, k=3,
                          nrsfm_steps=100),
           "small": Preset(n_fit=3000, bases=12, steps=1500, n_eval=50, edit_steps=100, n_world=400, m=16,
                           n_dir=800, k=10, nrsfm_steps=2000)}


def _frozen(module):
    return module.eval().requires_grad_(False)


def table1(control: NRSfMControl, model, evaluator, faces: dict, p: Preset, seed: int) -> list[dict]:
    """P-III Table 1 rows (space, editor, the five losses) on ``faces``."""
    g = torch.Generator().manual_seed(seed)
    n = len(faces["landmarks"])
    delta = (5 + 15 * torch.rand(n, generator=g)) * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    rows = []
    for space in control.spaces:
        phi, render = control.phi(space), renderer(model, space, faces["noise"])
        codes, X = faces[space], faces["landmarks"]
        with torch.no_grad():
            q = phi(codes)
            L_w = landmark_loss(phi.render(q), X).mean().item()
        q_edit = torch.stack([ed.turn(q[i], phi.n_bases, yaw=float(delta[i])) for i in range(n)])
        with torch.no_grad():
            e0 = evaluator(render(codes))["identity"]
        for editor in EDITORS:
            options = ({"distance": ed.identity_distance(render, evaluator, codes), "lam": 0.01, "steps": p.edit_steps}
                       if editor == "gradient" else {"damping": DAMPING if editor == "linear, damped" else 0.0})
            w_edit = ed.edit(phi, codes, q_edit, editor.split(",")[0], **options)
            with torch.no_grad():
                out = evaluator(render(w_edit))
                q_hat = phi(w_edit)
                rows.append({"space": space, "editor": editor,
                             "L_L(w)": L_w, "L_L(w_edit)": landmark_loss(phi.render(q_hat), out["landmarks"]).mean().item(),
                             "L_phi": (q_hat - q_edit).pow(2).sum(1).mean().item(),
                             "L_R": landmark_loss(phi.render(q_edit), out["landmarks"]).mean().item(),
                             "L_ID": (1 - (out["identity"] * e0).sum(1)).mean().item()})
    return rows


def world_angles(R: torch.Tensor) -> torch.Tensor:
    """(yaw, pitch, roll) in degrees of world rotations R = Rz(roll) Rx(pitch) Ry(yaw) (... x 3 x 3)."""
    yaw = torch.atan2(-R[..., 2, 0], R[..., 2, 2])
    pitch = torch.asin(R[..., 2, 1].clamp(-1, 1))
    roll = torch.atan2(R[..., 0, 1], R[..., 1, 1])
    return torch.rad2deg(torch.stack([yaw, pitch, roll], -1))


def aligned_rotations(R_fit: torch.Tensor, R_world: torch.Tensor) -> torch.Tensor:
    """The fitted rotations in the world's frame after one global Procrustes rotation G: image y down
    makes the camera rows (R_0, -R_1, -R_2) of a world R; G = argmin sum_f ||C R_world_f - R_fit_f G||."""
    cam = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=R_fit.dtype))
    R_cam = cam @ R_world.to(R_fit.dtype)
    G = project_to_rotation((R_cam.transpose(1, 2) @ R_fit).sum(0))
    return cam @ R_fit @ G.T


def rotation_check(evaluator, p: Preset, seed: int) -> list[dict]:
    """RMS yaw / pitch / roll error (degrees) and the mean geodesic error of NRSfM rotations against
    the world's exact pose, from exact landmarks and from psi_L of the renders."""
    from mien.data.world import WorldDataset
    from mien.data.world import geometry as geo

    ranges = {"yaw": (-30.0, 30.0), "pitch": (-12.0, 12.0), "roll": (-12.0, 12.0), "intensity": (0.0, 0.6)}
    batch = WorldDataset(p.n_world, 32, seed + 11, ranges=ranges).batch(range(p.n_world))
    f = batch["factors"]
    R_world = geo.rotation(f["yaw"], f["pitch"], f["roll"]).double()
    truth = torch.stack([f["yaw"], f["pitch"], f["roll"]], -1).double()
    with torch.no_grad():
        psi = evaluator(batch["image"])["landmarks"].double()
    rows = []
    for name, X in (("exact landmarks", batch["landmarks2d"].double()), ("psi_L (evaluator, 32 px)", psi)):
        for metric in METRICS:
            m = RankOneNRSfM(p.bases, metric=metric, front=30).fit(X)
            R = aligned_rotations(m.rotations_, R_world)
            err = world_angles(R) - truth
            cos = ((R.transpose(1, 2) @ R_world).diagonal(dim1=1, dim2=2).sum(1) - 1) / 2
            rows.append({"landmarks": name, "metric": metric,
                         **{f"rms_{a}": err[:, i].pow(2).mean().sqrt().item() for i, a in enumerate(("yaw", "pitch", "roll"))},
                         "geodesic_mean": torch.rad2deg(torch.arccos(cos.clamp(-1, 1))).mean().item(),
                         "reprojection_rms": m.reprojection_error_})
    return rows


def fit_diagnostics(X: torch.Tensor, yaw: torch.Tensor, p: Preset) -> list[dict]:
    """ALS (Eq. 4.13) against P-III's gradient fit (Eq. 10) on the GAN's landmarks, per metric upgrade:
    reprojection RMS, the largest std of the coefficients alpha, the landmark motion (RMS, [0, 1]
    units) of R(q) turned by 10 degrees of yaw over that of the rigid turn (alpha = 0), and the slope
    of NRSfM's theta_y (degrees) on the evaluator's yaw."""
    rows = []
    for method in ("als", "gradient"):
        for metric in ("orthographic", "none"):
            m = RankOneNRSfM(p.bases, method=method, metric=metric, front=30, steps=p.nrsfm_steps).fit(X)
            q, K = m.q_, p.bases
            rigid = q.clone()
            rigid[:, 6:6 + K] = 0
            moved = (m.render(ed.turn(q, K, yaw=10.0)) - m.render(q)).pow(2).sum(-1).mean().sqrt()
            moved_rigid = (m.render(ed.turn(rigid, K, yaw=10.0)) - m.render(rigid)).pow(2).sum(-1).mean().sqrt()
            ty, y = torch.rad2deg(m.angles_[:, 1]), yaw.double()
            slope = ((ty - ty.mean()) * (y - y.mean())).sum() / (y - y.mean()).pow(2).sum()
            rows.append({"method": method, "metric": metric, "reprojection_rms": m.reprojection_error_,
                         "alpha_std_max": q[:, 6:6 + K].std(0).max().item(),
                         "turn_ratio": (moved / moved_rigid).item(), "theta_y_slope": slope.item()})
    return rows


def _direction_edit(render, meter, codes, vector, target: float, span: float = 2.0):
    """Codes moved along ``vector`` (unit) by the strength whose measured mean yaw change is
    ``target``: the slope of a 3-point sweep in [-span, span] (units: the vector's norm)."""
    with torch.no_grad():
        yaws = [meter(render(codes + a * vector))["yaw"].mean().item() for a in (-span, 0.0, span)]
    slope = (yaws[2] - yaws[0]) / (2 * span)
    return codes + (target / slope if abs(slope) > 1e-6 else 0.0) * vector, slope


def yaw_comparison(control: NRSfMControl, model, evaluator, p: Preset, seed: int, target: float = 15.0):
    """(rows, images faces x methods): NRSfM's yaw edit in W against InterFaceGAN and GANSpace."""
    from mien.metrics.image import csim_mien, lpips_mien

    meter = gd.FactorMeter(evaluator)
    faces = generated_faces(model, evaluator, p.m, seed + 3)
    pool = generated_faces(model, evaluator, p.n_dir, seed + 5)
    render = renderer(model, "w", faces["noise"])
    codes, phi = faces["w"], control.phi("w")
    with torch.no_grad():
        q = phi(codes)
    q_edit = ed.turn(q, phi.n_bases, yaw=target)
    std = pool["w"].std(0).norm().item()
    ifg = gd.InterFaceGAN("w", ratio=0.1 if p.n_dir < 500 else 0.02, factor="yaw", seed=seed).fit(
        pool["w"], meter(pool["image"])["yaw"]).normal_
    comps = gd.GANSpace(min(p.k, pool["w"].shape[1])).fit(pool["w"])
    vectors = comps.direction_.vectors * comps.std_[:, None]
    slopes = [abs(_direction_edit(render, meter, codes, v, target)[1]) for v in vectors]
    best = int(torch.tensor(slopes).argmax())
    edits = {"NRSfM phi (W), gradient": ed.edit(phi, codes, q_edit, "gradient", lam=0.01, steps=p.edit_steps,
                                                distance=ed.identity_distance(render, evaluator, codes)),
             "NRSfM phi (W), linear": ed.edit(phi, codes, q_edit, "linear"),
             "InterFaceGAN yaw": _direction_edit(render, meter, codes, ifg * std / len(ifg) ** 0.5, target)[0],
             f"GANSpace component {best}": _direction_edit(render, meter, codes, vectors[best], target)[0]}
    with torch.no_grad():
        x0 = render(codes)
        before = meter(x0)
        rows, images = [], [x0]
        for name, w in edits.items():
            x = render(w)
            after = meter(x)
            dyaw = after["yaw"] - before["yaw"]
            rows.append({"method": name, "dyaw_mean": dyaw.mean().item(), "dyaw_std": dyaw.std().item(),
                         "abs_dpitch": (after["pitch"] - before["pitch"]).abs().mean().item(),
                         "abs_droll": (after["roll"] - before["roll"]).abs().mean().item(),
                         "csim_mien": csim_mien(x, x0, evaluator), "lpips_mien": lpips_mien(x, x0, evaluator)})
            images.append(x)
    return rows, torch.stack(images, 1)


def reproduce(ckpt, out, preset: str = "small", seed: int = 0) -> Path:
    """Run the three studies on the GAN ``ckpt`` (default: the zoo GAN); write ``haas-nrsfm.md``,
    ``results.json``, ``nrsfm/`` (the fitted model) and ``grids/`` under ``out``."""
    import mien
    from mien.evaluator import evaluator_for
    from mien.experiments.gan_directions import default_checkpoint
    from mien.report.grid import save_grid

    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p, out, start = PRESETS[preset], ensure_writable_dir(out), time.time()
    ckpt = Path(ckpt) if ckpt is not None else default_checkpoint()
    model = _frozen(mien.load(ckpt))
    evaluator = _frozen(evaluator_for(model.config.image_size))
    faces = generated_faces(model, evaluator, p.n_fit, seed)
    control = NRSfMControl(p.bases, SPACES, p.n_fit, p.steps, nrsfm_steps=p.nrsfm_steps, seed=seed).fit(
        model, evaluator, faces)
    with torch.no_grad():
        yaw = torch.cat([evaluator.pose_degrees(evaluator(x)["pose"])[:, 0] for x in faces["image"].split(256)])
    diagnostics = fit_diagnostics(faces["landmarks"].double(), yaw, p)
    control.save(out / "nrsfm", {"checkpoint": str(ckpt)})
    held_out = generated_faces(model, evaluator, p.n_eval, seed + 1)
    rows = table1(control, model, evaluator, held_out, p, seed)
    world = rotation_check(evaluator, p, seed)
    yaw_rows, yaw_images = yaw_comparison(control, model, evaluator, p, seed)
    show = min(8, p.m)
    save_grid(yaw_images[:show].flatten(0, 1), out / "grids" / "yaw-edit.png", nrow=yaw_images.shape[1], scale=3,
              labels=["input", "NRSfM grad", "NRSfM lin", "InterFaceGAN", "GANSpace"] * show)
    fit_faces = held_out["image"][:8]
    with torch.no_grad():
        fitted = control.phi("w").render(control.phi("w")(held_out["w"][:8]))
    save_grid(torch.cat([fit_faces, fit_faces]), out / "grids" / "landmarks.png", nrow=len(fit_faces), scale=4,
              landmarks=torch.cat([held_out["landmarks"][:8], fitted]))
    seconds = time.time() - start
    here = Path.cwd().resolve()
    shown = ckpt.resolve().relative_to(here) if ckpt.resolve().is_relative_to(here) else ckpt
    info = {"checkpoint": str(shown), "preset": preset, "seed": seed, "settings": asdict(p),
            "nrsfm_reprojection_rms": control.nrsfm_.reprojection_error_,
            "phi_train_loss": {s: phi.train_loss_ for s, phi in control.regressors_.items()},
            "fit_diagnostics": diagnostics, "table1": rows, "world_rotations": world, "yaw_edit": yaw_rows, "seconds": seconds}
    atomic_write_text(out / "results.json", json.dumps(info, indent=2))
    path = out / "haas-nrsfm.md"
    atomic_write_text(path, markdown(info))
    return path


def _f(x) -> str:
    return f"{x:.3g}"


def markdown(info: dict) -> str:
    p = info["settings"]
    lines = ["## Haas P-III: rank-one NRSfM control of the GAN", "",
             f"Checkpoint `{info['checkpoint']}`, preset {info['preset']}: NRSfM (K = {p['bases']}) on psi_L of "
             f"{p['n_fit']} generated faces (reprojection RMS {info['nrsfm_reprojection_rms']:.3g} in [0, 1] units); "
             f"phi (3 x 512, Eq. 12) {p['steps']} Adam steps per space; Table 1 on {p['n_eval']} held-out faces, "
             f"yaw edits of +-U(5, 20) degrees, gradient editor {p['edit_steps']} Adam steps with lambda_ID = 0.01.",
             "", "### P-III Table 1 (lower is better; thesis sg2 rows in brackets)", "",
             "| space | editor | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for r in info["table1"]:
        ref = THESIS.get((r["space"], r["editor"]))
        cells = [_f(r[c]) + (f" ({ref[i]})" if ref else "") for i, c in enumerate(COLUMNS)]
        lines.append(f"| {r['space']} | {r['editor']} | " + " | ".join(cells) + " |")
    lines += ["", "Landmark losses: mean squared point distance in [0, 1] image units (the thesis's units are "
              "unstated, so only orderings compare); L_phi in q's units (radians, image units); L_ID = 1 - cosine of "
              "the evaluator's identity embeddings (ArcFace in the thesis).", "",
              f"### Recovered rotations against the world ({p['n_world']} renders, yaw +-30, pitch and roll +-12, "
              "expressions; one global Procrustes alignment)", "",
              "| landmarks | metric upgrade | RMS yaw | RMS pitch | RMS roll | mean geodesic | reprojection RMS |",
              "|---|---|---|---|---|---|---|"]
    for r in info["world_rotations"]:
        lines.append(f"| {r['landmarks']} | {r['metric']} | {_f(r['rms_yaw'])} | {_f(r['rms_pitch'])} | {_f(r['rms_roll'])} | "
                     f"{_f(r['geodesic_mean'])} | {_f(r['reprojection_rms'])} |")
    lines += ["", "Angles in degrees; `none` is P-III's raw split M_0 = U_0 Sigma_0 (not metric, so its angles are "
              "not rotations of the face).", "",
              "### ALS against P-III's gradient fit on the GAN's landmarks", "",
              "| rank-one fit | metric upgrade | reprojection RMS | max std of alpha | 10 degree turn / rigid turn | "
              "theta_y per evaluator degree |", "|---|---|---|---|---|---|"]
    for r in info["fit_diagnostics"]:
        lines.append(f"| {r['method']} | {r['metric']} | {_f(r['reprojection_rms'])} | {_f(r['alpha_std_max'])} | "
                     f"{_f(r['turn_ratio'])} | {_f(r['theta_y_slope'])} |")
    lines += ["", "Turn ratio: landmark motion of R(q) turned by 10 degrees of yaw over that of the same turn with "
              "alpha = 0 (1 = the bases follow the head; large = depth-pointing bases with huge coefficients). "
              "The control above uses the gradient fit with the orthographic upgrade.", "", f"### A +15 degree yaw edit of {p['m']} generated faces (evaluator-measured)",
              "", "| method | yaw change | abs pitch change | abs roll change | csim_mien | lpips_mien |",
              "|---|---|---|---|---|---|"]
    for r in info["yaw_edit"]:
        lines.append(f"| {r['method']} | {r['dyaw_mean']:.1f} +- {r['dyaw_std']:.1f} | {_f(r['abs_dpitch'])} | "
                     f"{_f(r['abs_droll'])} | {_f(r['csim_mien'])} | {_f(r['lpips_mien'])} |")
    lines += ["", "NRSfM's edit is asked for +15 degrees in the world's convention through phi; the directions' "
              "strengths are calibrated on these faces to a mean change of +15 (favouring them). "
              "Grids: `grids/yaw-edit.png`, `grids/landmarks.png` (psi_L, then R(phi(w))).",
              f"Run time {info['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"
