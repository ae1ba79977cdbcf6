"""The one data-set builder of the engine and the verbs: a ``data:`` section (:class:`DataConfig`)
to a map-style data set of sample dicts (design.md, Contracts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch.utils.data import Dataset

DEFAULT_SIZE = 64


@dataclass
class DataConfig:
    """Where batches come from: the world on the fly (default) or a folder (``path``)."""

    source: str = "world"
    path: str | None = None
    split: str | None = None  # one split of a folder (train, val, test), all when None
    size: int = DEFAULT_SIZE
    n: int = 20000
    seed: int = 0
    design: str = "iid"
    fixed: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    n_identities: int | None = None
    frames: list[int] = field(default_factory=lambda: [35, 45])  # sequence lengths (source: sequences)
    batch_size: int = 64
    num_workers: int = 0


def make_dataset(cfg: DataConfig) -> Dataset:
    """The world on the fly, its landmark sequences (``source: sequences``, collated by padding),
    or a folder (``data.path``): mien's image folders, or CelebA, FFHQ, AffectNet and FER2013 as
    they are unpacked (:mod:`mien.data.formats`; ``mien data prepare`` makes a faster copy)."""
    if cfg.source == "sequences":
        from mien.data.world.sequences import WorldSequenceDataset, pad_sequences

        dataset = WorldSequenceDataset(cfg.n, cfg.seed, tuple(cfg.frames), n_identities=cfg.n_identities)
        dataset.collate = pad_sequences
        return dataset
    if cfg.source == "world":
        from mien.data.world import WorldDataset

        return WorldDataset(cfg.n, cfg.size, cfg.seed, cfg.design, fixed=cfg.fixed, ranges=cfg.ranges,
                            n_identities=cfg.n_identities)
    from mien.data.folder import FolderDataset
    from mien.data.formats import detect_layout, open_layout
    from mien.data.formats.dataset import LayoutDataset

    layout = detect_layout(cfg.path)
    if layout == "folder":
        return FolderDataset(cfg.path, size=cfg.size, split=cfg.split)
    return LayoutDataset(open_layout(cfg.path, layout), size=cfg.size, split=cfg.split)
