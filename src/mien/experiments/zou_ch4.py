"""`mien reproduce zou-ch4` (experiment): Zou thesis ch. 4 on the mesh world's two-class meshes.

Outer stratified k-fold cross-validation (§4.6.1.2); in each fold the training part TR is split
80/20 (stratified) into T and V, a DVAE is trained on T for every (alpha, sqrt(v)) of the grid and
the one whose sex-changed reconstructions of V the classifier C (trained on T) most often calls
the opposite sex (highest OSRSR; ties broken by the lower RE, a departure) is retrained on TR.
On the fold's test part: Tab. 4.1 (CA of q_0 and of C, OSRSR, SSRSR, RE in mm), the sigma-VAE's RE
and C's accuracy on VAE reconstructions and on DVAE reconstructions with the estimated label
(§4.6.2); Fig. 4.6, accuracy against the fraction of the mesh removed from one side (averaged over
the six sides) for C, DVAE, DVAE + C_recon and VAE + C, all trained with the missing-data
augmentation but C of VAE + C (§4.8.2); on the first fold, the mean saliency maps (Eq. 4.12) of
C and C_recon without missing data, drawn on the mesh (§4.9).

Every model trains through the engine into ``OUT/runs/fold<k>/<name>``; a finished run is reused."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mien.errors import ConfigError
from mien.io import ensure_writable_dir
from mien.models.mesh_dvae.missing import SIDES, side_mask

FRACTIONS = tuple(round(0.1 * i, 1) for i in range(9))  # Fig. 4.6's x-axis, 0 to 80 % removed


class Part(Dataset):
    """The items ``indices`` of a mesh data set, with its ``template`` (read by the model configs)."""

    def __init__(self, data, indices):
        self.data, self.indices, self.template = data, [int(i) for i in indices], data.template

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i) -> dict:
        return self.data[self.indices[i]]


def stratified_folds(labels, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of a stratified k-fold split: each test part keeps the class ratio."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    if k < 2 or np.bincount(labels).min() < k:
        raise ConfigError(f"{k}-fold cross-validation needs k >= 2 and at least k meshes of each class; "
                          "lower --folds or raise data.n")
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))


def stratified_split(indices, labels, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``indices`` split into (1 - share, share) parts with the class ratio of ``labels[indices]``."""
    from sklearn.model_selection import train_test_split

    indices = np.asarray(indices)
    return tuple(train_test_split(indices, test_size=share, stratify=np.asarray(labels)[indices], random_state=seed))


# --- the runs ---------------------------------------------------------------------------------------
def _run_config(base, model: dict):
    from mien.train.config import RunConfig

    return RunConfig(model, copy.deepcopy(base.data), copy.deepcopy(base.train))


def _shared(base) -> dict:
    return {k: base.model[k] for k in ("filters", "K", "hidden", "mesh_size") if k in base.model}


def _train(cfg, data, indices, out: Path, progress: bool):
    import mien
    from mien.models.checkpoint import read_meta
    from mien.train import fit

    if not ((out / "meta.json").is_file() and read_meta(out).get("steps", 0) >= cfg.train.max_steps):
        fit(cfg, out, resume=(out / "state" / "last.ckpt").is_file(), progress=progress, dataset=Part(data, indices))
    return mien.load(out)


class Runs:
    """Trains (or reuses) the models of one fold on given index sets."""

    def __init__(self, base, data, folder: Path, progress: bool):
        self.base, self.data, self.folder, self.progress = base, data, folder, progress

    def dvae(self, name: str, indices, **fields):
        return _train(_run_config(self.base, {**self.base.model, **fields}), self.data, indices,
                      self.folder / name, self.progress)

    def classifier(self, name: str, indices, **fields):
        return _train(_run_config(self.base, {"name": "mesh_classifier", **_shared(self.base), **fields}),
                      self.data, indices, self.folder / name, self.progress)


# --- evaluation -------------------------------------------------------------------------------------
@torch.no_grad()
def _batched(fn, *tensors, size: int = 64) -> torch.Tensor:
    return torch.cat([fn(*(t[i:i + size] for t in tensors)) for i in range(0, len(tensors[0]), size)])


def vertex_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean vertex distance (mm) per mesh."""
    return (a - b).norm(dim=-1).mean(-1)


def label_scores(dvae, c, meshes: torch.Tensor, y: torch.Tensor) -> dict:
    """CA (q_0 and C), OSRSR and SSRSR (C on sex-changed and sex-preserved reconstructions, z from
    the true label) and RE (mm, sex preservation, per subject then averaged) of Tab. 4.1."""
    flip = _batched(lambda m, t: dvae.reconstruct(m, t, flip=True), meshes, y)
    keep = _batched(lambda m, t: dvae.reconstruct(m, t), meshes, y)
    estimated = _batched(dvae.reconstruct, meshes)
    return {"CA_dvae": (_batched(dvae.predict, meshes) == y).float().mean().item(),
            "CA_c": (_batched(c.predict, meshes) == y).float().mean().item(),
            "OSRSR": (_batched(c.predict, flip) == 1 - y).float().mean().item(),
            "SSRSR": (_batched(c.predict, keep) == y).float().mean().item(),
            "RE": vertex_error(keep, meshes).mean().item(),
            "C_on_dvae": (_batched(c.predict, estimated) == y).float().mean().item()}


def vae_scores(vae, c, meshes: torch.Tensor, y: torch.Tensor) -> dict:
    rec = _batched(vae.reconstruct, meshes)
    return {"RE_vae": vertex_error(rec, meshes).mean().item(),
            "C_on_vae": (_batched(c.predict, rec) == y).float().mean().item()}


def missing_curves(models: dict, meshes: torch.Tensor, y: torch.Tensor, fractions=FRACTIONS) -> dict:
    """Fig. 4.6: accuracy per fraction removed, averaged over the six sides, of C, the DVAE's q_0,
    DVAE + C_recon and VAE + C (the VAE reconstructs the incomplete mesh, C classifies it)."""
    predict = {"c": lambda m, k: models["c"].predict(m, k), "dvae": lambda m, k: models["dvae"].predict(m, k),
               "c_recon": lambda m, k: models["c_recon"].predict(m, k),
               "vae_c": lambda m, k: models["c_plain"].predict(models["vae"].reconstruct(m, mask=k))}
    curves = {name: [] for name in predict}
    for f in fractions:
        hits = {name: 0.0 for name in predict}
        for s in range(len(SIDES)):
            mask = side_mask(meshes, torch.full((len(meshes),), s), torch.full((len(meshes),), f))
            for name, fn in predict.items():
                hits[name] += (_batched(fn, meshes, mask) == y).float().mean().item() / len(SIDES)
        for name in predict:
            curves[name].append(hits[name])
    return curves


def mean_saliency(classifier, meshes: torch.Tensor) -> np.ndarray:
    """The saliency map of Eq. 4.12 averaged over meshes, (V,)."""
    return torch.cat([classifier.saliency(meshes[i:i + 32]) for i in range(0, len(meshes), 32)]).mean(0).numpy()


# --- one fold and the whole protocol ----------------------------------------------------------------
def select(runs: Runs, meshes, y, train_idx, grid, seed: int) -> tuple[tuple[float, float], dict]:
    """The (alpha, sqrt_v) of the grid with the highest OSRSR on V (ties: lower RE) and every score; a
    grid of one point is its own choice (nothing is trained on T)."""
    if len(grid) == 1:
        return grid[0], {}
    t, v = stratified_split(train_idx, y.numpy(), 0.2, seed)
    c = runs.classifier("inner/c", t)
    scores = {}
    for alpha, sqrt_v in grid:
        model = runs.dvae(f"inner/dvae_a{alpha}_v{sqrt_v}", t, alpha=alpha, sqrt_v=sqrt_v)
        scores[(alpha, sqrt_v)] = label_scores(model, c, meshes[v], y[v])
    best = max(scores, key=lambda k: (scores[k]["OSRSR"], -scores[k]["RE"]))
    return best, scores


def run_fold(runs: Runs, meshes, y, train_idx, test_idx, grid, seed: int, saliency: bool) -> dict:
    (alpha, sqrt_v), inner = select(runs, meshes, y, train_idx, grid, seed)
    dvae = runs.dvae("dvae", train_idx, alpha=alpha, sqrt_v=sqrt_v)
    vae = runs.dvae("vae", train_idx, variant="vae")
    c = runs.classifier("c", train_idx)
    xt, yt = meshes[test_idx], y[test_idx]
    result = {"alpha": alpha, "sqrt_v": sqrt_v, **label_scores(dvae, c, xt, yt), **vae_scores(vae, c, xt, yt),
              "inner": {f"{a},{v}": s for (a, v), s in inner.items()}}
    dvae_m = runs.dvae("dvae_missing", train_idx, alpha=alpha, sqrt_v=sqrt_v, missing=0.4)
    models = {"dvae": dvae_m, "vae": runs.dvae("vae_missing", train_idx, variant="vae", missing=0.4),
              "c": runs.classifier("c_missing", train_idx, missing=0.4), "c_plain": c,
              "c_recon": runs.classifier("c_recon_missing", train_idx, missing=0.4,
                                         recon_from=str(runs.folder / "dvae_missing"))}
    result["missing"] = missing_curves(models, xt, yt)
    if saliency:
        c_recon = runs.classifier("c_recon", train_idx, recon_from=str(runs.folder / "dvae"))
        result["saliency"] = {"C": mean_saliency(c, xt), "C_recon": mean_saliency(c_recon, xt)}
    return result


def _all_meshes(data) -> tuple[torch.Tensor, torch.Tensor]:
    items = [data[i] for i in range(len(data))]
    return (torch.stack([torch.as_tensor(d["mesh"]) for d in items]).float(),
            torch.tensor([int(d["label"]) for d in items]))


def _protocol(config_path, overrides: list[str]):
    """The base run config, the data set and all its meshes and labels."""
    from mien.data.source import make_dataset
    from mien.train import load_run_config

    base = load_run_config(config_path, overrides)
    if base.model.get("name") != "dvae":
        raise ConfigError(f"{config_path} is not a dvae config; pass dvae/<preset> or a copy of it")
    data = make_dataset(base.data)
    return (base, data, *_all_meshes(data))


def _fold(config_path, overrides: list[str], out: Path, k: int, folds: int, grid, seed: int, progress: bool,
          prepared=None) -> dict:
    """Fold ``k`` of the protocol (what a worker process runs, rebuilding the data itself)."""
    base, data, meshes, y = prepared or _protocol(config_path, overrides)
    train_idx, test_idx = stratified_folds(y.numpy(), folds, seed)[k]
    runs = Runs(base, data, out / "runs" / f"fold{k}", progress)
    return run_fold(runs, meshes, y, train_idx, test_idx, grid, seed, saliency=k == 0)


def reproduce(config_path, out_dir, overrides: list[str] | None = None, folds: int = 5,
              alphas=(1.0, 2.0), sqrt_vs=(1.6, 1.9), seed: int = 0, progress: bool = True, jobs: int = 1) -> Path:
    """Run the protocol (``jobs`` folds at a time in separate processes), write ``OUT/zou-ch4.md``,
    ``results.json``, ``fig4_6.png`` and the saliency renders; returns the report's path."""
    from mien.experiments.processes import in_processes

    out = ensure_writable_dir(out_dir)
    overrides = list(overrides or [])
    prepared = _protocol(config_path, overrides)
    data, meshes, y = prepared[1:]
    stratified_folds(y.numpy(), folds, seed)  # its errors before any training
    grid = [(float(a), float(v)) for a in alphas for v in sqrt_vs]
    if jobs <= 1:
        results = [_fold(config_path, overrides, out, k, folds, grid, seed, progress, prepared) for k in range(folds)]
    else:
        calls = {k: (config_path, overrides, out, k, folds, grid, seed, False) for k in range(folds)}
        results = list(in_processes(_fold, calls, jobs).values())
    from mien.experiments.zou_ch4_report import write_report

    return write_report(out, results, data.template, meshes, y, Path(config_path).name, grid, FRACTIONS)
