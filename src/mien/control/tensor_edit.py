"""What `mien control tensor fit` and `... transfer` do (Haas P-I §III-C, §IV-F-G; digest §2.1):
fit the (stacked) tensor model on the world grid of a GAN checkpoint and save it; transfer every
expression cell and view of the model onto one face (a world face or an image file, inverted into
W+ first).

Missing cells (a NaN code, e.g. a failed or partial inversion passed with ``codes``) are filled by
masked HOOI (:func:`mien.control.multilinear.hooi`) when ``impute`` is set, the rank of every
non-latent mode the smallest that keeps 99 % of the energy of the mean-filled, centred tensor's
unfolding (a choice of mien's; the sources need full grids, Ch. 7.2).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from mien.control import gan_invert
from mien.control.multilinear import hooi, left_singular, reconstruct, unfold
from mien.control.tensor_grid import GridSpec, grid_tensor, inverted_grid
from mien.control.tensor_stack import StackedTensorModel, load_model, save_model
from mien.errors import ConfigError, DataError


def _grid_codes(model, ckpt, spec: GridSpec, codes, out: Path, on_batch, encoder=None) -> torch.Tensor:
    """The grid's W+ codes: read from the inversion folder ``codes`` or inverted (cached in out/grid;
    ``encoder``: a pSp/e4e run whose codes start the optimisation)."""
    if codes is None:
        if encoder is not None:
            from mien.models.stylegan.encoder import load_encoder

            encoder = load_encoder(encoder, generator=ckpt)
        return inverted_grid(model, ckpt, spec, out / "grid", encoder=encoder, on_batch=on_batch)["codes"]
    tensors, _ = gan_invert.load_inversion(codes)
    ws = tensors["ws"]
    shape = (model.config.num_ws, model.config.w_dim)
    if tuple(ws.shape[1:]) != shape:
        raise DataError(f"the codes in {codes} are {' x '.join(map(str, ws.shape[1:]))} latents but the GAN {ckpt} "
                        f"has {shape[0]} x {shape[1]}; pass codes inverted into this generator")
    return ws


def impute(tensor: torch.Tensor, energy: float = 0.99, iters: int = 100) -> torch.Tensor:
    """Missing (NaN) cells of a grid tensor filled by masked HOOI (see the module docstring)."""
    mask = torch.isfinite(tensor)
    filled = torch.where(mask, tensor, tensor.nan_to_num(0.0).sum(dim=tuple(range(1, tensor.dim())), keepdim=True)
                         / mask.sum(dim=tuple(range(1, tensor.dim())), keepdim=True))
    centred = filled - filled.mean(dim=tuple(range(1, tensor.dim())), keepdim=True)
    ranks = [None]
    for mode in range(1, tensor.dim()):
        share = left_singular(unfold(centred, mode))[1].pow(2).cumsum(0)
        ranks.append(int((share < energy * share[-1]).sum()) + 1)
    core, factors = hooi(filled, ranks, mask=mask, iters=iters)
    return torch.where(mask, tensor, reconstruct(core, factors))


def fit_on_grid(model, ckpt, spec: GridSpec, out, codes=None, fill_missing: bool = False, per_style: bool = True,
                on_batch=None, encoder=None, **options) -> tuple[StackedTensorModel, Path]:
    """Fit the tensor model on the world grid ``spec`` of the GAN ``model`` (folder ``ckpt``) and
    save it (``model.safetensors`` + ``model.json``) in ``out``; returns (model, folder)."""
    out = Path(out)
    ws = _grid_codes(model, ckpt, spec, codes, out, on_batch, encoder)
    data = spec.dataset(model.config.image_size)
    tensor, modes, latent = grid_tensor(ws, data)
    missing = int((~torch.isfinite(tensor)).any(0).sum())
    if missing and not fill_missing:
        raise DataError(f"the grid has {missing} missing cells (NaN codes); pass --impute to fill them by "
                        "masked HOOI, or invert those faces again")
    if missing:
        tensor = impute(tensor)
    fitted = StackedTensorModel(per_style, **options).fit(tensor, modes, latent)
    info = {"generator": str(ckpt), "grid": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()},
            "missing_cells": missing}
    return fitted, save_model(fitted, out, info)


def face_image(ckpt, size: int, index: int | None = None, image=None, align: bool = True) -> torch.Tensor:
    """1 x C x S x S: face ``index`` of the GAN's training world (unseen seed 12345), or an image file."""
    if (index is None) == (image is None):
        raise ConfigError("give exactly one of --face INDEX (a world face) and --image FILE")
    if image is not None:
        from mien.data.photo import load_face

        return load_face(image, size, align=align)["image"][None]
    from mien.models.checkpoint import training_world

    return training_world(ckpt, index + 1, 12345, size).batch([index])["image"]


@torch.no_grad()
def transfer_images(tmodel: StackedTensorModel, gan, ws: torch.Tensor, gamma: float = 1.0,
                    intensity_level: int = -1, seed: int = 0, names=None) -> tuple[torch.Tensor, list[str]]:
    """Images and labels (``names``: one per expression level): G(w), then the code with each expression level set (P-I §IV-F; with an
    intensity mode, at level ``intensity_level``), then each view level v != 0 reached by the shift
    gamma (e_v - e_0) of the view parameters (Eqs. 13-14)."""
    m0 = tmodel.models_[0]
    modes = m0.modes_
    expression, view = modes[1], modes[-1]
    levels = m0.factors_[1].shape[0]
    params = tmodel.transform(ws)
    codes, labels = [ws.double()], ["input code"]
    if len(modes) == 4:
        n_int = m0.factors_[2].shape[0]
        if not -n_int <= intensity_level < n_int:
            raise ConfigError(f"--intensity-level {intensity_level} does not exist; the model has {n_int} levels")
        params = tmodel.replace(params, modes[2], torch.eye(n_int, dtype=torch.float64)[intensity_level])
    eye = torch.eye(levels, dtype=torch.float64)
    for c in range(levels):
        codes.append(tmodel.inverse_transform(tmodel.replace(params, expression, eye[c])))
        labels.append(names[c] if names and len(names) == levels else f"{expression} {c}")
    n_views = m0.factors_[-1].shape[0]
    for v in range(1, n_views):
        codes.append(tmodel.inverse_transform(tmodel.replace(params, view, shift=gamma * tmodel.rotation(view, 0, v))))
        labels.append(f"{view} 0->{v}")
    codes = torch.cat(codes).float()
    noise = [n.expand(len(codes), -1, -1, -1) for n in gan.noise_maps(1, torch.Generator().manual_seed(seed))]
    return gan.synthesize(codes, noise).clamp(-1, 1), labels


def transfer_face(model_dir, ckpt=None, index=None, image=None, steps: int = 150, gamma: float = 1.0,
                  intensity_level: int = -1, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Invert one face into W+ of the model's GAN (or ``ckpt``): (the face and its transfers, labels)."""
    import mien

    tmodel, meta = load_model(model_dir)
    ckpt = Path(ckpt or meta.get("generator", ""))
    gan = mien.load(ckpt)
    if not hasattr(gan, "synthesize"):
        raise ConfigError(f"{ckpt} is not a GAN; pass --ckpt with the stylegan run the model was fitted on")
    shape = (gan.config.num_ws, gan.config.w_dim)
    if shape != tuple(tmodel.latent_shape_):
        raise DataError(f"the tensor model holds {' x '.join(map(str, tmodel.latent_shape_))} latents but {ckpt} has "
                        f"{shape[0]} x {shape[1]}; pass the generator the model was fitted on")
    x = face_image(ckpt, gan.config.image_size, index, image)
    ws = gan_invert.optimise(gan, x, "w+", steps=steps, optimise_noise=False, w_samples=500,
                             generator=torch.Generator().manual_seed(seed)).ws
    grid = meta.get("grid") or {}
    emotions, levels = list(grid.get("emotions", [])), grid.get("intensities", [])
    names = (["neutral"] + [f"{e} {i:g}" for e in emotions for i in levels]) if grid.get("layout") == "p1" else emotions
    images, labels = transfer_images(tmodel, gan, ws, gamma, intensity_level, seed, names)
    return torch.cat([x.clamp(-1, 1), images]), ["input", *labels]
