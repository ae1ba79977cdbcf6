"""The stacked style-separated model of Haas P-I §III-C (digest §2.1), expression and rotation
transfer with their errors (P-I §IV-E-G), and the safe on-disk form of a tensor model.

:class:`StackedTensorModel` fits one :class:`~mien.control.tensor_model.TensorModel` per W+ style
(T_s: L x P x ... x R, S of them; S (P + E + R) rank-one parameters instead of P + E + R) or, with
``per_style=False``, one model of the whole flattened code. Transfer (P-I Eqs. 13-14):

- expression: the estimated expression parameters q'_expr replaced by a known one (the one-hot of
  a training cell);
- rotation: q'_view + gamma m with m = e_2 - e_1 in canonical coordinates (m = u_2 - u_1, rows of
  U_view, in factor coordinates); gamma = 1 maps the first view to the second.

Errors against the ground truth the crossed grid holds (P-I §IV-E): eps_approx = ||tau(tau^-1(w))
- w||^2, eps_expr = ||w_transfer - w_target||^2 (every held-out person, view and source cell to
every other expression cell), eps_rot the same for view 1 -> view 2; the baseline "copy" is the
error of leaving the source code unchanged.

Storage: ``model.safetensors`` (per style: mean, scale, core, factors, singular values) +
``model.json`` (format, settings, modes, latent shape and ``info``); never pickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mien.control.tensor_model import TensorModel
from mien.errors import ConfigError, DataError
from mien.io import atomic_write_bytes, atomic_write_text, ensure_writable_dir, read_tensor_files

FORMAT = "mien.tensor-model/1"
SETTINGS = ("normalise", "ranks", "ridge", "sum_to_one", "lasso", "solver", "iters", "tol", "lr", "adam_steps")


class StackedTensorModel:
    """One tensor model per W+ style (``per_style``) or one for the whole code; ``options`` go to
    every :class:`TensorModel`. Parameters are lists over styles of the per-mode blocks."""

    def __init__(self, per_style: bool = True, **options):
        self.per_style, self.options = per_style, options

    def fit(self, tensor: torch.Tensor, modes: list[str], latent_shape) -> "StackedTensorModel":
        """Fit on ``tensor`` (D x I_1 x ... x I_N, D = prod(latent_shape), latent_shape = (S, L))."""
        latent_shape = tuple(latent_shape)
        if len(latent_shape) != 2 or latent_shape[0] * latent_shape[1] != tensor.shape[0]:
            raise DataError(f"latent shape {latent_shape} (styles x style size) does not hold the tensor's "
                            f"{tensor.shape[0]} coordinates")
        self.latent_shape_, self.modes_ = latent_shape, list(modes)
        groups = latent_shape[0] if self.per_style else 1
        width = tensor.shape[0] // groups
        self.models_ = [TensorModel(**self.options).fit(tensor[g * width:(g + 1) * width], modes) for g in range(groups)]
        return self

    def _split(self, codes: torch.Tensor) -> list[torch.Tensor]:
        codes = torch.as_tensor(codes, dtype=torch.float64)
        d = self.latent_shape_[0] * self.latent_shape_[1]
        if codes.dim() < 2 or codes[0].numel() != d:
            raise DataError(f"codes of shape {tuple(codes.shape[1:])} for a model of {self.latent_shape_[0]} x "
                            f"{self.latent_shape_[1]} latents; use codes of the generator the model was fitted on")
        return list(codes.reshape(len(codes), -1).chunk(len(self.models_), 1))

    def transform(self, codes: torch.Tensor) -> list[list[torch.Tensor]]:
        """tau^-1 of every style: [style][mode] n x I_k."""
        return [m.transform(c) for m, c in zip(self.models_, self._split(codes))]

    def inverse_transform(self, params: list[list[torch.Tensor]]) -> torch.Tensor:
        """Codes n x S x L of per-style parameters."""
        parts = [m.inverse_transform(p).reshape(len(p[0]), -1) for m, p in zip(self.models_, params)]
        return torch.cat(parts, 1).reshape(-1, *self.latent_shape_)

    def transform_full_rank(self, codes: torch.Tensor) -> list[torch.Tensor]:
        return [m.transform_full_rank(c) for m, c in zip(self.models_, self._split(codes))]

    def inverse_transform_full_rank(self, q: list[torch.Tensor]) -> torch.Tensor:
        parts = [m.inverse_transform_full_rank(v).reshape(len(v), -1) for m, v in zip(self.models_, q)]
        return torch.cat(parts, 1).reshape(-1, *self.latent_shape_)

    def replace(self, params, mode, value=None, shift=None) -> list[list[torch.Tensor]]:
        """Parameters with mode ``mode`` set to ``value`` (I_k or n x I_k) or moved by ``shift``."""
        k = self.models_[0].mode_index(mode) - 1
        out = []
        for style in params:
            style = list(style)
            if value is not None:
                v = torch.as_tensor(value, dtype=torch.float64)
                style[k] = v.expand(len(style[0]), -1) if v.dim() == 1 else v
            if shift is not None:
                style[k] = style[k] + torch.as_tensor(shift, dtype=torch.float64)
            out.append(style)
        return out

    def rotation(self, mode, source: int = 0, target: int = 1) -> torch.Tensor:
        """m = e_target - e_source in the canonical coordinates of the view mode (P-I Eq. 13)."""
        levels = self.models_[0].factors_[self.models_[0].mode_index(mode) - 1].shape[0]
        if not (0 <= source < levels and 0 <= target < levels):
            raise ConfigError(f"views {source} and {target} must lie in 0..{levels - 1}")
        eye = torch.eye(levels, dtype=torch.float64)
        return eye[target] - eye[source]

    def directions(self, **kwargs):
        """P-II global directions of each style's model, concatenated over styles (a departure:
        P-II derives them from one model of the whole code; ``per_style=False`` gives that)."""
        from mien.control.direction import Direction

        found = [m.directions(**kwargs) for m in self.models_]
        out = {}
        for name, first in found[0].items():
            vectors = torch.cat([f[name].vectors.reshape(-1) for f in found]).reshape(1, *self.latent_shape_)
            out[name] = Direction(first.space, vectors, sign=first.sign, provenance=first.provenance)
        return out


def transfer_errors(model: StackedTensorModel, tensor: torch.Tensor, expression="expression", view="yaw",
                    gamma: float = 1.0) -> dict[str, float]:
    """Mean eps_approx, eps_expr, eps_rot (and the "copy" baselines) on a grid tensor of held-out
    persons (D x P x ... x R, the model's layout); see the module docstring."""
    m0 = model.models_[0]
    e, r = m0.mode_index(expression), m0.mode_index(view)
    if tensor.dim() - 1 != len(m0.modes_) or e != 2 or r != tensor.dim() - 1:
        raise DataError("transfer errors need the P-I layout D x persons x expression cells x views")
    d, persons, cells, views = tensor.shape
    codes = tensor.permute(1, 2, 3, 0).reshape(-1, *model.latent_shape_)  # (person, cell, view)-major
    params = model.transform(codes)
    approx = (model.inverse_transform(params) - codes).pow(2).flatten(1).sum(1).mean()
    flat = codes.reshape(persons, cells, views, d)
    expr, expr_copy = [], []
    for target in range(cells):
        moved = model.inverse_transform(model.replace(params, expression, torch.eye(cells, dtype=torch.float64)[target]))
        moved = moved.reshape(persons, cells, views, d)
        truth = flat[:, target:target + 1]
        keep = [c for c in range(cells) if c != target]
        expr.append((moved[:, keep] - truth).pow(2).sum(-1).flatten())
        expr_copy.append((flat[:, keep] - truth).pow(2).sum(-1).flatten())
    rotated = model.inverse_transform(model.replace(params, view, shift=gamma * model.rotation(view, 0, 1)))
    rotated = rotated.reshape(persons, cells, views, d)
    rot = (rotated[:, :, 0] - flat[:, :, 1]).pow(2).sum(-1)
    rot_copy = (flat[:, :, 0] - flat[:, :, 1]).pow(2).sum(-1)
    return {"eps_approx": float(approx), "eps_expr": float(torch.cat(expr).mean()),
            "eps_expr_copy": float(torch.cat(expr_copy).mean()), "eps_rot": float(rot.mean()),
            "eps_rot_copy": float(rot_copy.mean())}


def save_model(model: StackedTensorModel, folder, info: dict) -> Path:
    """Write ``model.safetensors`` + ``model.json`` into ``folder`` (atomically); returns the folder."""
    from safetensors.torch import save as save_tensors

    folder = ensure_writable_dir(folder)
    tensors = {}
    for g, m in enumerate(model.models_):
        tensors.update({f"{g}.mean": m.mean_, f"{g}.scale": m.scale_, f"{g}.core": m.core_,
                        **{f"{g}.factor{k}": u for k, u in enumerate(m.factors_)},
                        **{f"{g}.sigma{k}": s for k, s in enumerate(m.sigmas_)}})
    settings = {k: v for k, v in model.options.items() if k in SETTINGS}
    meta = {"format": FORMAT, "per_style": model.per_style, "settings": settings, "modes": model.modes_,
            "latent_shape": list(model.latent_shape_), "styles": len(model.models_), **info}
    atomic_write_bytes(folder / "model.safetensors", save_tensors({k: v.contiguous() for k, v in tensors.items()}))
    atomic_write_text(folder / "model.json", json.dumps(meta, indent=2))
    return folder


def load_model(folder) -> tuple[StackedTensorModel, dict]:
    """The model and the sidecar written by :func:`save_model` (never unpickled)."""
    tensors, meta = read_tensor_files(folder, "model", FORMAT, "mien control tensor fit")
    model = StackedTensorModel(meta["per_style"], **meta["settings"])
    model.latent_shape_, model.modes_, model.models_ = tuple(meta["latent_shape"]), meta["modes"], []
    for g in range(meta["styles"]):
        m = TensorModel(**meta["settings"])
        m.modes_, m.mean_, m.scale_, m.core_ = meta["modes"], tensors[f"{g}.mean"], tensors[f"{g}.scale"], tensors[f"{g}.core"]
        m.latent_shape_ = (len(m.mean_),)
        m.factors_ = [tensors[f"{g}.factor{k}"] for k in range(len(meta["modes"]))]
        m.sigmas_ = [tensors[f"{g}.sigma{k}"] for k in range(len(meta["modes"]) + 1)]
        model.models_.append(m)
    return model, meta
