"""The main job (issue 6): train, or take from the zoo, a VAE, a beta-TCVAE, an AR-VAE, a VQ-VAE
and a class-conditional latent-diffusion model on the world; read and edit their latent spaces;
steer generation by expression; measure everything with the evaluator; write ``index.html``.

Every stage writes its pictures and a ``results.json`` into its own folder under ``out``; a
stage whose results exist, made with the same model weights, is not run again, so an interrupted
demo resumes where it stopped and a demo folder made with an older zoo is brought up to date.
Models are checkpoint folders under ``out/models`` (an interrupted training resumes too)."""

from __future__ import annotations

import filecmp
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mien.config import preset_path
from mien.errors import ConfigError
from mien.experiments.demo_gan import chunks, gan_stage
from mien.models.checkpoint import read_meta, training_world

VAES = ("vae", "tcvae", "arvae")
MODELS = VAES + ("vqvae", "ldm", "stylegan")
FIRST_STAGE = {"tiny": "vqvae", "small": "klae"}  # the autoencoder the latent diffusion runs in
LABELS = {"vae": "VAE", "tcvae": "beta-TCVAE", "arvae": "AR-VAE", "vqvae": "VQ-VAE", "ldm": "latent diffusion",
          "stylegan": "StyleGAN2"}


@dataclass
class DemoConfig:
    """What the demo runs. ``preset`` picks the recipes (tiny: the presets <model>/tiny, seconds;
    small: zoo/<model>, the zoo's recipes); with ``train_from_scratch`` False the
    small preset takes the shipped zoo checkpoints instead of training them."""

    out: Path = Path("out/demo")
    preset: str = "small"
    seed: int = 0
    train_from_scratch: bool = False
    n_codes: int = 2000  # faces encoded for the disentanglement table
    per_class: int = 64  # diffusion samples per expression for accuracy, fid_mien and KID
    n_edits: int = 8  # neutral faces taken to every emotion
    t0: int = 500
    guidance: float = 4.0
    edit_sweep: tuple = ((400, 500, 600), (1.0, 3.0, 5.0))  # t0 values x guidance scales (Table 4.2)
    steps: int = 25
    n_gan: int = 500  # GAN samples and world faces for fid_mien, precision and recall (x2: InterFaceGAN's)
    invert_steps: int = 200  # optimisation steps of the GAN inversions
    progress: bool = True

    def __post_init__(self):
        if self.preset not in ("tiny", "small"):
            raise ConfigError(f"--preset {self.preset!r}: use tiny or small")
        self.out = Path(self.out)


def recipe(name: str, preset: str) -> Path:
    """The config a demo model is trained from: the zoo recipe (small) or the model's tiny preset."""
    return preset_path("zoo", name) if preset == "small" else preset_path(name, "tiny")


# --- stage bookkeeping ------------------------------------------------------------------------
def _stage(cfg: DemoConfig, name: str, run, models: tuple = ()) -> dict:
    """Run ``run(folder) -> results`` once; later calls read its results.json, unless the weights
    of the demo ``models`` it used have changed since (a new zoo, a retrained model)."""
    from mien.io import atomic_write_text, ensure_writable_dir

    folder = ensure_writable_dir(cfg.out / name)
    done = folder / "results.json"
    if done.is_file():
        results = json.loads(done.read_text())
        if results.get("weights", {}) == _weights(cfg, models):
            _say(cfg, f"[{name}] already done, reused")
            return results
        _say(cfg, f"[{name}] its models changed since it ran")
    start = time.perf_counter()
    _say(cfg, f"[{name}] running ...")
    results = run(folder)
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["weights"] = _weights(cfg, models)
    atomic_write_text(done, json.dumps(results, indent=2, default=float))
    _say(cfg, f"[{name}] done in {results['seconds']:.1f} s")
    return results


def _say(cfg: DemoConfig, line: str) -> None:
    if cfg.progress:
        print(line, flush=True)


def _from_zoo(cfg: DemoConfig, name: str) -> bool:
    from mien import zoo

    return cfg.preset == "small" and not cfg.train_from_scratch and name in zoo.names()


def _weights(cfg: DemoConfig, names: tuple) -> dict:
    """sha256 (16 hex digits) of the weights each demo model has or will have: the zoo's file
    for a zoo model, else the run folder's (None before it is trained)."""
    import hashlib

    from mien import zoo

    out = {}
    for name in names:
        f = (zoo.path(name) if _from_zoo(cfg, name) else cfg.out / "models" / name) / "model.safetensors"
        out[name] = hashlib.sha256(f.read_bytes()).hexdigest()[:16] if f.is_file() else None
    return out


def model_folder(cfg: DemoConfig, name: str) -> Path:
    """Train (or resume), or copy from the zoo, the checkpoint of demo model ``name``."""
    from mien import zoo
    from mien.train import fit, load_run_config

    folder = cfg.out / "models" / name
    if _from_zoo(cfg, name):  # copied again when the zoo has changed
        same = (folder / "model.safetensors").is_file() and filecmp.cmp(
            folder / "model.safetensors", zoo.path(name) / "model.safetensors", shallow=False)
        return folder if same else zoo.get(name, folder)
    path = recipe(name, cfg.preset)
    overrides = [f"model.autoencoder={cfg.out / 'models' / FIRST_STAGE[cfg.preset]}"] if name == "ldm" else []
    run = load_run_config(path, overrides + [f"train.seed={cfg.seed}"])
    if not ((folder / "meta.json").is_file() and read_meta(folder).get("steps", 0) >= run.train.max_steps):
        fit(run, folder, resume=(folder / "state" / "last.ckpt").is_file(), progress=cfg.progress)
    return folder


# --- pictures and numbers ---------------------------------------------------------------------
def _evaluator(model):
    """The shipped evaluator for the model's image size."""
    from mien.evaluator import load_evaluator

    return load_evaluator(32 if model.config.image_size < 64 else 64)


def _grid(images, path: Path, **kw) -> Path:
    from mien.report.grid import save_grid

    return save_grid(images, path, scale=3, **kw)


@torch.no_grad()
def vae_stage(cfg: DemoConfig, ckpt: Path, folder: Path) -> dict:
    """Samples, reconstructions, traversals (AR-VAE rows labelled with their attribute),
    lerp/slerp interpolations and the disentanglement scores of one VAE."""
    import mien
    from mien.train import load_run_config
    from mien.control import AxisDirection, traverse
    from mien.control.directions import dimension_labels
    from mien.control.interpolate import interpolate
    from mien.metrics import disentangle as dis
    from mien.metrics import image

    model = mien.load(ckpt)
    ev = _evaluator(model)
    test = training_world(ckpt, max(cfg.n_codes, 64), cfg.seed + 12345)
    batch = test.batch(range(16))
    x = batch["image"]
    recon = model.reconstruct(x)
    _grid(model.sample(32, generator=torch.Generator().manual_seed(cfg.seed))["image"], folder / "samples.png", nrow=8)
    _grid(torch.cat([x[:8], recon[:8], x[8:], recon[8:]]), folder / "reconstructions.png", nrow=8)
    batches = [test.batch(range(s, min(s + 250, len(test)))) for s in range(0, len(test), 250)]
    codes = torch.cat([model.encode(b["image"]) for b in batches])
    dims = list(range(codes.shape[1]))
    z = model.encode(x[:1])[0]
    axes = AxisDirection(dims).fit(codes)
    _grid(traverse(model, z[None], axes.direction_, axes.sweep(9), absolute=True), folder / "traversal.png", nrow=9,
          labels=dimension_labels(model, dims, 9))
    pair = model.encode(x[1:3])
    for method in ("lerp", "slerp"):
        _grid(torch.cat([x[1:2], model.decode(interpolate(pair[0], pair[1], 8, method)), x[2:3]]),
              folder / f"interpolation_{method}.png", nrow=10)
    factors = {k: torch.cat([b["factors"][k] for b in batches]).numpy() for k in batches[0]["factors"]}
    z_np = codes.numpy()
    scores = {"mig": dis.mig(z_np, factors, test.factors), "sap": dis.sap(z_np, factors, test.factors),
              "factor_vae": dis.factor_vae_score(z_np, factors, test.factors)}
    scores.update({f"dci_{k}": v for k, v in dis.dci(z_np, factors, test.factors).items()})
    attributes = load_run_config(recipe("arvae", cfg.preset)).model["attributes"]
    regularised = [f for f in test.factors if f.name in attributes]
    scores["mig_regularised"] = dis.mig(z_np, factors, regularised)
    scores["psnr"] = image.psnr(x, recon.clamp(-1, 1))
    scores["csim_mien"] = image.csim_mien(x, recon.clamp(-1, 1), ev)
    return {"model": model.model_name, "steps": read_meta(ckpt).get("steps"), "metrics": scores,
            "regularised": list(attributes), "fixed": dict(test.design.fixed)}


@torch.no_grad()
def vqvae_stage(cfg: DemoConfig, ckpt: Path, folder: Path) -> dict:
    """The VQ-VAE (also the latent diffusion's first stage): reconstructions and code usage."""
    import mien
    from mien.metrics import image
    from mien.models.vqvae import perplexity

    model = mien.load(ckpt)
    x = training_world(ckpt, 256, cfg.seed + 12345).batch(range(256))["image"]
    recon = model.reconstruct(x).clamp(-1, 1)
    _grid(torch.cat([x[:8], recon[:8], x[8:16], recon[8:16]]), folder / "reconstructions.png", nrow=8)
    _grid(model.sample(16, generator=torch.Generator().manual_seed(cfg.seed))["image"], folder / "samples.png", nrow=8)
    codes = model.nearest_codes(model.encode_latent(x)).flatten()
    usage = torch.bincount(codes, minlength=model.config.num_codes).float() / len(codes)
    return {"model": "vqvae", "steps": read_meta(ckpt).get("steps"),
            "metrics": {"psnr": image.psnr(x, recon), "ssim": image.ssim(x, recon), "perplexity": float(perplexity(usage)),
                        "codes_used": int((usage > 0).sum())}}


@torch.no_grad()
def diffusion_stage(cfg: DemoConfig, ckpt: Path, folder: Path) -> dict:
    """Samples of every expression with classifier-free guidance: the evaluator's expression
    accuracy, fid_mien and KID against world faces of that expression, per class and overall."""
    import mien
    from mien.metrics import fid, image

    model = mien.load(ckpt)
    names = list(model.config.class_names)
    ev = _evaluator(model)
    g = torch.Generator().manual_seed(cfg.seed)
    rows, shown, gen_f, ref_f = [], [], [], []
    for c, cls in enumerate(names):
        s = torch.cat([model.sample(n, cond=c, generator=g, guidance=cfg.guidance, steps=cfg.steps)["image"]
                       for n in chunks(cfg.per_class, 64)]).clamp(-1, 1)
        ref = training_world(ckpt, cfg.per_class, cfg.seed + 777 + c, expression=cls)
        ref = ref.batch(range(cfg.per_class))["image"]
        fg, fr = fid.image_features(s, ev), fid.image_features(ref, ev)
        kid, _ = fid.kid_from_features(fg, fr, subset_size=min(1000, cfg.per_class))
        rows.append({"class": cls, "expression_acc": image.expression_accuracy(s, torch.full((len(s),), c), ev),
                     "fid_mien": fid.fid_from_features(fg, fr), "kid_mien": kid})
        shown.append(s[:8])
        gen_f.append(fg)
        ref_f.append(fr)
    gf, rf = torch.cat(gen_f), torch.cat(ref_f)
    overall = {"class": "all", "expression_acc": _mean(rows)["expression_acc"], "fid_mien": fid.fid_from_features(gf, rf),
               "kid_mien": fid.kid_from_features(gf, rf, subset_size=min(1000, len(gf)))[0]}
    x = training_world(ckpt, 16, cfg.seed + 12345).batch(range(16))["image"]
    _grid(torch.cat([x[:8], model.reconstruct(x[:8]).clamp(-1, 1)]), folder / "first_stage.png", nrow=8)
    _grid(torch.cat(shown), folder / "samples.png", nrow=8,
          labels=[n if j == 0 else "" for n in names for j in range(len(shown[0]))])
    return {"model": "ldm", "steps": read_meta(ckpt).get("steps"), "guidance": cfg.guidance,
            "sampler_steps": cfg.steps, "per_class": cfg.per_class, "rows": rows + [overall]}


def _edit_scores(x, c: int, edited, ev) -> dict:
    from mien.metrics import image

    return {"expression_acc": image.expression_accuracy(edited, torch.full((len(x),), c), ev),
            "psnr": image.psnr(x, edited), "ssim": image.ssim(x, edited), "lpips_mien": image.lpips_mien(x, edited, ev),
            "csim_mien": image.csim_mien(x, edited, ev)}


def _mean(rows: list[dict], **label) -> dict:
    return {**label, **{k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if isinstance(rows[0][k], float)}}


@torch.no_grad()
def edit_stage(cfg: DemoConfig, ckpt: Path, folder: Path) -> dict:
    """DDIM-inversion emotion edits (Pikoulis §4.4, the structure of Table 4.2): neutral world
    faces taken to every other expression, scored by the evaluator's target-expression accuracy
    and PSNR, SSIM, lpips_mien, csim_mien to the input; per target at (t0, guidance), and the mean
    over targets on the grid t0 x guidance of ``cfg.edit_sweep``."""
    import mien
    from mien.control import edit

    model = mien.load(ckpt)
    names = list(model.config.class_names)
    targets = [(c, n) for c, n in enumerate(names) if n != "neutral"]
    ev = _evaluator(model)
    x = training_world(ckpt, cfg.n_edits, cfg.seed + 4242, expression="neutral").batch(range(cfg.n_edits))["image"]

    def edits(t0: int, guidance: float):
        return [edit(model, x, "neutral", n, t0=t0, steps=cfg.steps, guidance=guidance,
                     generator=torch.Generator().manual_seed(cfg.seed)).clamp(-1, 1) for _, n in targets]

    shown = edits(cfg.t0, cfg.guidance)
    rows = [{"target": n, **_edit_scores(x, c, e, ev)} for (c, n), e in zip(targets, shown)]
    sweep = []
    t0s, guidances = cfg.edit_sweep
    for t0 in t0s:
        for g in guidances:
            done = shown if (t0, g) == (cfg.t0, cfg.guidance) else edits(t0, g)
            sweep.append(_mean([_edit_scores(x, c, e, ev) for (c, _), e in zip(targets, done)], t0=t0, guidance=g))
    strip = torch.stack([x, *shown], 1).reshape(-1, *x.shape[1:])  # one row per face: input, then each target
    _grid(strip, folder / "edits.png", nrow=len(targets) + 1,
          labels=["input"] + [n for _, n in targets] + [""] * (len(strip) - len(targets) - 1))
    return {"t0": cfg.t0, "guidance": cfg.guidance, "sampler_steps": cfg.steps, "faces": cfg.n_edits,
            "rows": rows + [_mean(rows, target="mean")], "sweep": sweep}


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
    edits = [({}, "plain"), ({"glasses": 1, "glasses_shape": 0, "glasses_tint": 0.0}, "round glasses"),
             ({"glasses": 1, "glasses_shape": 1, "glasses_tint": 1.0}, "square sunglasses"), ({"beard": 1}, "beard"),
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


def world_stage(cfg: DemoConfig, folder: Path) -> dict:
    from mien.data.world import WorldDataset

    images, labels = world_tour(cfg.seed)
    _grid(images, folder / "tour.png", nrow=8, labels=labels)
    _grid(WorldDataset(32, 32, cfg.seed).batch(range(32))["image"], folder / "samples_32px.png", nrow=8)
    return {}


def _ldm(cfg: DemoConfig) -> Path:
    """The latent-diffusion checkpoint (it embeds its first stage); trained after that first stage."""
    if not _from_zoo(cfg, "ldm"):
        model_folder(cfg, FIRST_STAGE[cfg.preset])
    return model_folder(cfg, "ldm")


def run_demo(cfg: DemoConfig) -> Path:
    """All stages, then the report; returns the path of index.html."""
    from mien.report.demo_page import write_report

    start = time.perf_counter()
    results = {"world": _stage(cfg, "world", lambda f: world_stage(cfg, f))}
    for name in VAES:  # models are trained (outside no_grad) only when their stage still has to run
        results[name] = _stage(cfg, name, lambda f, n=name: vae_stage(cfg, model_folder(cfg, n), f), (name,))
    results["vqvae"] = _stage(cfg, "vqvae", lambda f: vqvae_stage(cfg, model_folder(cfg, "vqvae"), f), ("vqvae",))
    results["diffusion"] = _stage(cfg, "diffusion", lambda f: diffusion_stage(cfg, _ldm(cfg), f), ("ldm",))
    results["edits"] = _stage(cfg, "edits", lambda f: edit_stage(cfg, _ldm(cfg), f), ("ldm",))
    results["gan"] = _stage(cfg, "gan", lambda f: gan_stage(model_folder(cfg, "stylegan"), f, cfg.seed, cfg.n_gan,
                                                            cfg.n_gan * 2, cfg.invert_steps), ("stylegan",))
    run = (f"preset {cfg.preset} · seed {cfg.seed} · "
           f"{'trained from scratch' if cfg.train_from_scratch or cfg.preset == 'tiny' else 'zoo checkpoints'}")
    return write_report(cfg.out, results, time.perf_counter() - start, LABELS, VAES, cfg.n_codes, run)
