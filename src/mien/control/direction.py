"""The one ``Direction`` object of design.md (Directions and estimators) and the one function that
applies it to any model exposing its latent space.

A direction lives in a named space of :meth:`latent_spaces` (``z``: VAE-family codes; ``x_t`` and
``h``: a diffusion model's noisy latents and U-Net bottleneck, Haas P-V §3; ``w``, ``w+``, ``s``:
a GAN's W, W+ and StyleSpace, Haas Ch. 2.3). A ``w`` direction may carry ``layers``, the W+ inputs
it moves. ``vectors`` holds k directions, each of the space's shape, or for ``h`` one
offset per timestep (k x len(timesteps) x C x h x w). It is saved as ``vectors.safetensors`` plus
``direction.json`` (or as one ``.safetensors`` file, direction.json in its metadata); loading never
unpickles.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from mien.diffusion import sampling
from mien.diffusion.hspace import HSpace
from mien.errors import ConfigError, DataError
from mien.io import atomic_write_bytes, atomic_write_text, ensure_writable_dir

FORMAT = "mien.direction/1"
FIELDS = {"space": str, "layers": (list, type(None)), "timesteps": (list, type(None)), "sign": str, "provenance": dict}


@dataclass
class Direction:
    """k directions in latent space ``space``; ``sign`` says what +1 means ("towards happy");
    ``provenance`` records how it was found (method, data, seed, ...)."""

    space: str
    vectors: torch.Tensor
    layers: list[int] | None = None
    timesteps: list[int] | None = None
    sign: str = ""
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        if not torch.is_tensor(self.vectors) or self.vectors.dim() < 2:
            raise ConfigError("Direction.vectors must be a tensor of k directions (k x the space's shape)")
        if self.space == "h" and self.timesteps is None:
            raise ConfigError("an h-space direction needs the timesteps its offsets apply at")
        if self.timesteps is not None and (self.vectors.dim() < 3 or self.vectors.shape[1] != len(self.timesteps)):
            raise ConfigError(f"a direction over {len(self.timesteps)} timesteps needs vectors of shape "
                              f"k x {len(self.timesteps)} x ..., got {tuple(self.vectors.shape)}")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one vector in its space (per timestep for ``h``)."""
        return tuple(self.vectors.shape[1 if self.timesteps is None else 2:])

    def save(self, folder) -> Path:
        """Write ``vectors.safetensors`` then ``direction.json`` into ``folder``, each atomically; a
        path ending in ``.safetensors`` is written as one file, direction.json in its metadata."""
        meta = {"format": FORMAT, **{k: getattr(self, k) for k in FIELDS}}
        try:
            text = json.dumps(meta, indent=2)
        except TypeError as e:
            raise ConfigError(f"the direction's provenance must hold JSON values only ({e})") from None
        if str(folder).endswith(".safetensors"):
            path = Path(folder)
            ensure_writable_dir(path.parent)
            atomic_write_bytes(path, save_tensors({"vectors": self.vectors.contiguous()}, {"direction.json": text}))
            return path
        folder = ensure_writable_dir(folder)
        atomic_write_bytes(folder / "vectors.safetensors", save_tensors({"vectors": self.vectors.contiguous()}))
        atomic_write_text(folder / "direction.json", text)
        return folder

    @classmethod
    def load(cls, folder) -> "Direction":
        """Read a folder (or one ``.safetensors`` file) written by :meth:`save`; a missing, corrupt or
        foreign file is a DataError."""
        folder = Path(folder)
        again = "write it again with Direction.save"
        single = folder.suffix == ".safetensors"
        meta_name, blob_name = ((folder, folder) if single
                                else (folder / "direction.json", folder / "vectors.safetensors"))
        try:
            blob = blob_name.read_bytes()
            meta = json.loads(_header_metadata(blob).get("direction.json", "null") if single
                              else meta_name.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise DataError(f"{e.filename} does not exist; pass a folder or .safetensors file written by "
                            "Direction.save") from None
        except (OSError, UnicodeDecodeError, ValueError):
            raise DataError(f"{meta_name} {'has no readable header' if single else 'is not readable JSON'} "
                            f"(corrupt); {again}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataError(f"{meta_name} is not a mien direction ({FORMAT}); {again}")
        bad = [k for k, kind in FIELDS.items() if not isinstance(meta.get(k), kind)
               or (isinstance(meta.get(k), list) and not all(type(i) is int for i in meta[k]))]
        if bad:
            raise DataError(f"{meta_name} has a missing or malformed field {bad[0]!r}; {again}")
        try:
            vectors = load_tensors(blob)["vectors"]
        except Exception:  # noqa: BLE001 (any parse failure of an untrusted file is a corrupt file)
            raise DataError(f"{blob_name} is corrupt or holds no 'vectors'; {again}") from None
        try:
            return cls(vectors=vectors, **{k: meta[k] for k in FIELDS})
        except ConfigError as e:
            raise DataError(f"{folder} is inconsistent: {e}; {again}") from None


def _header_metadata(blob: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file's JSON header (a ValueError when malformed)."""
    if len(blob) < 8:
        raise ValueError("too short for a safetensors header")
    size = int.from_bytes(blob[:8], "little")
    if size > len(blob) - 8:
        raise ValueError("header longer than the file")
    header = json.loads(blob[8:8 + size].decode("utf-8"))
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise ValueError("no metadata")
    return meta


def check_space(model, space: str) -> tuple[int, ...]:
    """The shape of ``space`` in ``model``, or a ConfigError naming the spaces it exposes."""
    spaces = model.latent_spaces() if hasattr(model, "latent_spaces") else {}
    if space not in spaces:
        exposed = ", ".join(spaces) or "none"
        raise ConfigError(f"{getattr(model, 'model_name', type(model).__name__)} has no latent space {space!r}; "
                          f"it exposes: {exposed}")
    return spaces[space]


def _coefficients(direction: Direction, alpha) -> torch.Tensor:
    """alpha as one weight per vector: a number (one-vector directions) or k numbers."""
    k = len(direction.vectors)
    a = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1)
    if a.numel() == 1 and k > 1:
        raise ConfigError(f"the direction holds {k} vectors; give one alpha per vector or use traverse")
    if a.numel() != k:
        raise ConfigError(f"{a.numel()} alphas for a direction of {k} vectors")
    return a


def shift(codes: torch.Tensor, direction: Direction, alpha, absolute: bool = False) -> torch.Tensor:
    """codes + sum_i alpha_i v_i; with ``absolute``, the code's coordinate along each unit vector
    v_i/|v_i| is set to alpha_i instead (z + (alpha - <z, v>) v: the axis traversal of Higgins et al.
    2017 when v is a coordinate axis). A ``w`` direction moves W+ codes (n x num_ws x w_dim) at its
    ``layers`` only (all when None); W codes with ``layers`` are first copied to every layer (the
    layer-range edits of GANSpace, Haerkoenen et al. 2020, and Haas P-II)."""
    if direction.space == "w" and (codes.dim() == 3 or direction.layers is not None):
        return _shift_layers(codes, direction, alpha, absolute)
    a = _coefficients(direction, alpha).to(codes.device, codes.dtype)
    v = direction.vectors.to(codes.device, codes.dtype)
    if not absolute:
        return codes + (a.reshape(-1, *[1] * (v.dim() - 1)) * v).sum(0)
    for a_i, v_i in zip(a, v):
        v_i = v_i / v_i.norm()
        codes = codes - (codes * v_i).flatten(1).sum(1).reshape(-1, *[1] * v_i.dim()) * v_i + a_i * v_i
    return codes


def _shift_layers(codes: torch.Tensor, direction: Direction, alpha, absolute: bool) -> torch.Tensor:
    """W (n x d, broadcast to ``num_ws`` layers) or W+ codes (n x L x d) shifted at ``layers``."""
    num_ws = direction.provenance.get("num_ws") if codes.dim() == 2 else codes.shape[1]
    if codes.dim() == 2:
        if not isinstance(num_ws, int):
            raise ConfigError("a layer-range direction applied to W codes needs provenance['num_ws']; "
                              "pass W+ codes (n x num_ws x w_dim)")
        codes = codes[:, None].expand(-1, num_ws, -1)
    layers = list(range(num_ws)) if direction.layers is None else direction.layers
    out = codes.clone()
    moved = Direction("w", direction.vectors, None, None, direction.sign, direction.provenance)
    out[:, layers] = shift(codes[:, layers].flatten(0, 1), moved, alpha, absolute).reshape(out[:, layers].shape)
    return out


def check_layers(direction: Direction, num_ws: int) -> None:
    """A ConfigError when the direction's layer range leaves 0 .. num_ws - 1."""
    bad = [i for i in direction.layers or [] if not 0 <= i < num_ws]
    if bad:
        raise ConfigError(f"layer {bad[0]} is out of range; this generator has W+ layers 0..{num_ws - 1}")


def _sample(model, x_T, cond=None, guidance=None, steps=None, eta=None, generator=None, offsets=None,
            record: dict | None = None):
    """A diffusion model's sampler from given x_T, with h-space ``offsets`` {t: delta-h_t} injected
    and, when ``record`` is a dict, h_t of every step recorded into it."""
    c = model.config
    grid = sampling.timesteps(model.schedule.T, steps or c.sample_steps)
    if offsets is not None and not set(offsets) <= set(grid):
        raise ConfigError(f"the direction's timesteps {sorted(set(offsets) - set(grid))[:4]} are not on the "
                          f"sampler's grid of {len(grid)} steps; sample with the steps it was found with")
    denoise = model.denoiser(model.cond_labels(cond, len(x_T)), c.guidance if guidance is None else guidance)
    hspace = HSpace(model.net)
    try:
        recording = hspace.capture() if record is not None else contextlib.nullcontext({})
        with hspace.inject(offsets), recording as captured:
            z = sampling.sample(hspace.denoiser(denoise), model.schedule, x_T, grid, eta=c.eta if eta is None else eta,
                                prediction=c.prediction, generator=generator)
    finally:
        hspace.remove()
    if record is not None:
        record.update(captured)
    return model.from_latent(z)


@torch.no_grad()
def record_h(model, x_T: torch.Tensor, **options) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """Sample from x_T recording h_{T:1} (Haas P-V Alg. C-E, step 1): (h as n x steps x C x h x w, the
    sampler's timesteps, the images). Under classifier-free guidance h is the conditional branch's.
    ``options`` as for :func:`apply`."""
    check_space(model, "h")
    captured: dict[int, torch.Tensor] = {}
    images = _sample(model, x_T, record=captured, **options)
    ts = sorted(captured, reverse=True)
    return torch.stack([captured[t][-len(x_T):] for t in ts], 1), ts, images


def _synthesize(model, codes: torch.Tensor, noise=None) -> torch.Tensor:
    """A GAN's images of W (n x d) or W+ (n x num_ws x d) codes, clamped to [-1, 1]."""
    return model.synthesize(codes if codes.dim() == 3 else model.broadcast(codes), noise).clamp(-1, 1)


# Spaces where an edit moves the code itself (codes + alpha v), each with the map code -> image:
# z (a VAE's decoder; a GAN's G = g o f), x_t (a diffusion sampler), and a GAN's W, W+ (with a
# layer range) and S (StyleSpace, Wu et al. 2021).
RENDER: dict[str, Callable] = {
    "z": lambda model, codes, **options: model.decode(codes, **options),
    "x_t": _sample,  # sample from x_T + alpha v (Haas P-V §5, Eq. 10 with q = x_T)
    "w": _synthesize,
    "w+": _synthesize,
    "s": lambda model, codes, noise=None: model.from_styles(codes, noise).clamp(-1, 1),
}


def _h_offsets(direction: Direction, alpha, like: torch.Tensor) -> dict[int, torch.Tensor]:
    """{t: sum_i alpha_i v_i,t}: the delta-h_t of Haas P-V §3 at each timestep of the direction."""
    a = _coefficients(direction, alpha).to(like.device, like.dtype)
    v = direction.vectors.to(like.device, like.dtype)
    return dict(zip(direction.timesteps, (a.reshape(-1, *[1] * (v.dim() - 1)) * v).sum(0)))


def render(model, space: str, codes: torch.Tensor, **options) -> torch.Tensor:
    """The images of ``codes`` in ``space`` (decode for ``z``, the sampler from x_T for ``x_t``)."""
    check_space(model, space)
    if space not in RENDER:
        raise ConfigError(f"codes in space {space!r} cannot be turned into images; use one of {', '.join(RENDER)}")
    return RENDER[space](model, codes, **options)


def _checked(model, direction: Direction, absolute: bool) -> str:
    shape = check_space(model, direction.space)
    if direction.space == "h" and absolute:
        raise ConfigError("an h-space direction is an offset; absolute applies to z and x_t only")
    if direction.space not in RENDER and direction.space != "h":
        raise ConfigError(f"directions in space {direction.space!r} cannot be applied yet; "
                          f"supported: {', '.join([*RENDER, 'h'])}")
    if direction.shape != tuple(shape):
        raise ConfigError(f"the direction's vectors have shape {direction.shape}; {direction.space} of "
                          f"{model.model_name} has shape {tuple(shape)}")
    if direction.layers is not None:
        if direction.space != "w":
            raise ConfigError(f"a layer range applies to w directions; this one is in {direction.space}")
        check_layers(direction, model.latent_spaces()["w+"][0])
    return direction.space


def apply(model, codes: torch.Tensor, direction: Direction, alpha, absolute: bool = False, **options) -> torch.Tensor:
    """Images of ``codes`` (n x the space's shape; for ``h``, the x_T to sample from) moved by alpha
    along ``direction``: decode(z + alpha v) in ``z``; in ``h``, delta-h_t = alpha v_t added to the
    bottleneck at each of its timesteps, feeding both P_t and D_t (Haas P-V §3, :class:`HSpace`).
    ``absolute``: see :func:`shift`; ``options``: a diffusion sampler's cond, guidance, steps, eta, generator."""
    if _checked(model, direction, absolute) == "h":
        return _sample(model, codes, offsets=_h_offsets(direction, alpha, codes), **options)
    return RENDER[direction.space](model, shift(codes, direction, alpha, absolute), **options)


def traverse(model, codes: torch.Tensor, direction: Direction, alphas, absolute: bool = False,
             **options) -> torch.Tensor:
    """A traversal grid: for every code, every vector v_i of the direction and every alpha, the image
    of the code moved along v_i alone (n * k * steps images, in that order). ``alphas`` is one sweep
    (steps) or one per vector (k x steps)."""
    space, k = _checked(model, direction, absolute), len(direction.vectors)
    alphas = torch.as_tensor(alphas, dtype=torch.float64)
    alphas = alphas.expand(k, alphas.shape[-1]) if alphas.dim() == 1 else alphas
    if alphas.shape[0] != k:
        raise ConfigError(f"{alphas.shape[0]} rows of alphas for a direction of {k} vectors")
    along = [Direction(space, direction.vectors[i:i + 1], direction.layers, direction.timesteps) for i in range(k)]
    if space == "h":
        return torch.stack([_sample(model, codes, offsets=_h_offsets(along[i], a, codes), **options)
                            for i in range(k) for a in alphas[i]], 1).flatten(0, 1)
    moved = torch.stack([shift(codes, along[i], a, absolute) for i in range(k) for a in alphas[i]], 1)
    return RENDER[space](model, moved.flatten(0, 1), **options)
