"""The one data-set builder of the engine and the verbs: a ``data:`` section (:class:`DataConfig`)
to a map-style data set of sample dicts (design.md, Contracts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch.utils.data import Dataset

from mien.config import NonNegativeInt, PositiveInt, Probability
from mien.errors import ConfigError

DEFAULT_SIZE = 64


@dataclass
class DataConfig:
    """Where batches come from: the world on the fly (default) or a folder (``path``).

    World designs (:mod:`mien.data.world.factors`): ``fixed`` holds factors constant, ``ranges``
    narrows continuous ones, ``weights`` replaces a discrete factor's marginal (``{expression:
    {happy: 0.5}}`` makes half the faces happy, balancing the ``smile`` label).

    ``labels`` names the labels a semi-supervised model learns (world factors such as ``glasses``,
    or labels derived from them such as ``smile``, :mod:`mien.data.world.labels`); ``supervision``
    is the share of faces whose labels are shown (the batches then carry ``supervised``,
    :mod:`mien.data.supervision`; the thesis's rate is 0.2); None shows every label and adds no mask.

    ``cache`` (world source): render each face once into a uint8 memory-mapped cache
    (:mod:`mien.data.world.cache`, in ``$MIEN_CACHE`` or ``~/.cache/mien``; n x 3 x size^2 bytes)
    that every epoch, worker and process reads, faster than decoding PNGs; its images are the
    renders quantised as an export's PNGs are. On by default for training (every epoch reads every
    face); ``data.cache=false`` renders on the fly, unquantised, with no disk use."""

    source: str = "world"
    path: str | None = None
    split: str | None = None  # one split of a folder (train, val, test), all when None
    size: PositiveInt = DEFAULT_SIZE
    n: PositiveInt = 20000
    seed: NonNegativeInt = 0
    design: str = "iid"
    fixed: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    n_identities: PositiveInt | None = None
    frames: list[PositiveInt] = field(default_factory=lambda: [35, 45])  # sequence lengths (source: sequences)
    batch_size: PositiveInt = 64
    num_workers: NonNegativeInt = 0
    labels: list[str] = field(default_factory=list)
    supervision: float | None = None
    mesh_size: str = "small"  # mesh world topology (source: meshes, mesh_sequences): small or paper
    male_fraction: Probability | None = None  # exact share of men (source: meshes); thesis 470/752
    motions: PositiveInt = 12  # motions per subject (source: mesh_sequences; subjects = n_identities or 12)
    mesh_frames: PositiveInt = 40  # frames per mesh sequence
    cache: bool = True


def make_dataset(cfg: DataConfig, progress: bool = True) -> Dataset:
    """The world on the fly, its landmark sequences (``source: sequences``, collated by padding), its
    face meshes (``source: meshes``, ``mesh_sequences``; :mod:`mien.data.world.mesh_data`; with
    ``data.path`` a real mesh folder, :mod:`mien.data.formats.coma`),
    or a folder (``data.path``): mien's image folders, or CelebA, FFHQ, AffectNet and FER2013 as
    they are unpacked (:mod:`mien.data.formats`; ``mien data prepare`` makes a faster copy); with
    ``supervision`` set, wrapped in :class:`~mien.data.supervision.Supervised` (mask seeded by ``seed``).
    ``progress`` shows the bar of a world render cache's first build."""
    if cfg.supervision is not None:
        from mien.data.supervision import Supervised, check_rate

        check_rate(cfg.supervision)
        return Supervised(_dataset(cfg, progress), cfg.supervision, cfg.seed)
    return _dataset(cfg, progress)


def _dataset(cfg: DataConfig, progress: bool) -> Dataset:
    if cfg.source in ("meshes", "mesh_sequences") and cfg.path:
        from mien.data.formats.coma import MeshFolderDataset, MeshFolderSequences

        return MeshFolderDataset(cfg.path) if cfg.source == "meshes" else MeshFolderSequences(cfg.path, cfg.mesh_frames)
    if cfg.source in ("meshes", "mesh_sequences"):
        from mien.data.world.mesh_data import MeshDataset, MeshSequenceDataset

        if cfg.source == "meshes":
            return MeshDataset(cfg.n, cfg.seed, cfg.mesh_size, cfg.male_fraction, cfg.n_identities)
        return MeshSequenceDataset(cfg.n_identities or 12, cfg.motions, cfg.mesh_frames, cfg.seed, cfg.mesh_size, cfg.n)
    if cfg.source == "sequences":
        from mien.data.world.sequences import WorldSequenceDataset, pad_sequences

        dataset = WorldSequenceDataset(cfg.n, cfg.seed, tuple(cfg.frames), n_identities=cfg.n_identities)
        dataset.collate = pad_sequences
        return dataset
    if cfg.source == "world":
        from mien.data.world import WorldDataset

        return WorldDataset(cfg.n, cfg.size, cfg.seed, cfg.design, labels=cfg.labels, fixed=cfg.fixed,
                            ranges=cfg.ranges, weights=cfg.weights, n_identities=cfg.n_identities, cache=cfg.cache,
                            progress=progress)
    from mien.data.folder import FolderDataset
    from mien.data.formats import detect_layout, open_layout
    from mien.data.formats.dataset import LayoutDataset

    layout = detect_layout(cfg.path)
    if layout == "folder":
        dataset = FolderDataset(cfg.path, size=cfg.size, split=cfg.split)
    else:
        dataset = LayoutDataset(open_layout(cfg.path, layout), size=cfg.size, split=cfg.split)
    known = {f.name for f in getattr(dataset, "factors", [])}
    missing = [n for n in cfg.labels if n not in known]
    if missing:
        raise ConfigError(f"data.labels names {missing[0]!r}, which {cfg.path} does not label; "
                          f"choose from its factors ({', '.join(sorted(known)) or 'none'})")
    return dataset
