"""The data tensor of Haas Papers I-II (digest §2.1, Alg. A steps 1-2) from mien's world: the fully
crossed grid identities x expression cells x views rendered by the world's factorial design, every
face inverted into the GAN's W+ (optimisation, Eq. 2.20, optionally started from a pSp/e4e
encoder's codes: the hybrid of P-I), the flattened codes arranged as a tensor whose mode names come
from the design's factor schema.

Layouts: ``p1`` (P-I: neutral + 6 emotions x 4 intensities = 25 cells in one expression mode,
D x P x 25 x R) and ``p2`` (P-II: neutral dropped, D x P x 6 x 4 x R). Departures: the world's
views are yaw angles of one renderer instead of BU-3DFE's two cameras, and the optimisation runs
with the noise maps fixed (``optimise_noise=False``) so that the W+ code carries the whole face.

Inversion is the slow part: :func:`inverted_grid` caches the codes (``codes.safetensors`` +
``codes.json`` of :func:`mien.control.gan_invert.save_inversion`) keyed by the grid, the generator's
fingerprint and the inversion settings, and reuses them when all match.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from mien.control import gan_invert
from mien.errors import ConfigError, DataError

LAYOUTS = ("p1", "p2")
EMOTIONS = ("happy", "sad", "surprise", "fear", "disgust", "anger")


@dataclass
class GridSpec:
    """The crossed world grid: ``persons`` identities (world identities of ``seed``), ``layout``
    p1 or p2, the emotions and intensity levels of the expression cells, the yaw ``views``
    (degrees), and the inversion: ``steps`` of optimisation in batches of ``batch`` faces."""

    persons: int = 10
    layout: str = "p2"
    emotions: tuple = EMOTIONS
    intensities: tuple = (0.25, 0.5, 0.75, 1.0)
    views: tuple = (-20.0, 20.0)
    seed: int = 0
    steps: int = 150
    batch: int = 64
    fixed: dict = field(default_factory=lambda: {"pitch": 0.0, "roll": 0.0})

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ConfigError(f"grid layout {self.layout!r}; choose p1 (neutral + emotions x intensities) or p2")
        if self.persons < 2 or len(self.views) < 2 or not self.intensities or not (self.emotions or self.layout == "p1"):
            raise ConfigError("a tensor grid needs at least 2 persons, 2 views and one intensity (p2: one emotion)")
        if self.steps < 1 or self.batch < 1:
            raise ConfigError("grid inversion needs steps >= 1 and batch >= 1")
        self.emotions, self.intensities = tuple(self.emotions), tuple(float(i) for i in self.intensities)
        self.views = tuple(float(v) for v in self.views)

    def dataset(self, size: int):
        """The world's factorial design of this grid at ``size`` px."""
        from mien.data.world import WorldDataset

        expressions = (("neutral",) if self.layout == "p1" else ()) + self.emotions
        return WorldDataset(None, size, self.seed, "factorial", n_identities=self.persons, expressions=expressions,
                            intensities=self.intensities, views=self.views, fixed=dict(self.fixed))


def grid_tensor(codes: torch.Tensor, dataset) -> tuple[torch.Tensor, list[str], tuple[int, ...]]:
    """(T: D x I_1 x ... x I_N, mode names from the design's schema, the latent shape of one code)
    of codes (n x num_ws x w_dim, item order of ``dataset``'s factorial design). A missing cell is a
    row of NaN (e.g. a failed inversion): it stays NaN in T."""
    modes = dataset.design.grid_modes()
    sizes = [n for _, n in modes]
    if len(codes) != len(dataset):
        raise DataError(f"{len(codes)} codes for a grid of {len(dataset)} cells; every cell needs one code "
                        "(mark a missing one with NaN and fit with --impute)")
    latent = tuple(codes.shape[1:])
    flat = codes.reshape(*sizes, -1).double()
    return flat.permute(flat.dim() - 1, *range(len(sizes))).contiguous(), [m for m, _ in modes], latent


def drop_neutral(tensor: torch.Tensor, spec: GridSpec, size: int = 32) -> tuple[torch.Tensor, list[str]]:
    """The P-II tensor (D x P x E x I x R) of a P-I grid tensor (D x P x (1 + E I) x R) of ``spec``:
    the neutral cell dropped, the emotion cells split into emotion x intensity."""
    if spec.layout != "p1" or not spec.emotions:
        raise ConfigError("only a p1 grid with emotions has a neutral cell to drop")
    p2 = GridSpec(**{**asdict(spec), "layout": "p2"}).dataset(size).design.grid_modes()
    d, persons, _, views = tensor.shape
    out = tensor[:, :, 1:].reshape(d, persons, len(spec.emotions), len(spec.intensities), views)
    return out, [m for m, _ in p2]


def invert_faces(model, images: torch.Tensor, steps: int, batch: int, seed: int = 0, encoder=None,
                 on_batch=None) -> gan_invert.Inversion:
    """W+ inversions of ``images`` in batches (Eq. 2.20, noise fixed; ``encoder``: starting codes);
    ``on_batch()`` is called after each batch (a progress bar)."""
    parts = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        init = gan_invert.encode(encoder, x).codes if encoder is not None else None
        parts.append(gan_invert.optimise(model, x, "w+", steps=steps, start=init, optimise_noise=False,
                                         w_samples=500, generator=torch.Generator().manual_seed(seed + start)))
        if on_batch is not None:
            on_batch()
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    noise = [torch.cat(maps) for maps in zip(*(p.noise for p in parts))]
    history = {"loss": [sum(p.history["loss"][-1] * len(p.codes) for p in parts) / len(images)]}
    return gan_invert.Inversion("w+", cat("codes"), cat("ws"), noise, cat("images"), cat("lpips"), cat("mse"), history)


def _fingerprint(module) -> str:
    """sha256 (16 hex digits) of a module's parameters: which encoder started the inversions."""
    import hashlib

    digest = hashlib.sha256()
    for p in module.parameters():
        digest.update(p.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def inverted_grid(model, ckpt, spec: GridSpec, cache: Path | None = None, encoder=None, on_batch=None) -> dict:
    """{"codes", "images" (world), "recon", "lpips", "dataset"} of the grid ``spec`` on the GAN
    ``model`` (checkpoint folder ``ckpt``), from ``cache`` when it holds this grid's inversion."""
    from mien.models.stylegan.encoder import generator_fingerprint

    data = spec.dataset(model.config.image_size)
    key = {"grid": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()},
           "generator": generator_fingerprint(ckpt), "encoder": _fingerprint(encoder) if encoder else None}
    world = data.batch(range(len(data)))
    if cache is not None and (Path(cache) / "codes.json").exists():
        tensors, info = gan_invert.load_inversion(cache)
        if info.get("key") == key:
            return {"codes": tensors["ws"], "images": world["image"], "recon": tensors["images"],
                    "lpips": torch.tensor(info["lpips_mien"]), "dataset": data}
    result = invert_faces(model, world["image"], spec.steps, spec.batch, spec.seed, encoder, on_batch)
    if cache is not None:
        gan_invert.save_inversion(result, cache, {"method": "optimise (tensor grid)", "generator": str(ckpt),
                                                  "key": key})
    return {"codes": result.ws, "images": world["image"], "recon": result.images, "lpips": result.lpips,
            "dataset": data}
