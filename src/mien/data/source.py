"""The one data-set builder of the engine and the verbs: a ``data:`` section (:class:`DataConfig`)
to a map-style data set of sample dicts (design.md, Contracts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch.utils.data import Dataset

from mien.config import NonNegativeInt, PositiveInt

DEFAULT_SIZE = 64


@dataclass
class DataConfig:
    """Where batches come from: the world on the fly (default) or a folder (``path``)."""

    source: str = "world"
    path: str | None = None
    size: PositiveInt = DEFAULT_SIZE
    n: PositiveInt = 20000
    seed: NonNegativeInt = 0
    design: str = "iid"
    fixed: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    n_identities: PositiveInt | None = None
    frames: list[PositiveInt] = field(default_factory=lambda: [35, 45])  # sequence lengths (source: sequences)
    batch_size: PositiveInt = 64
    num_workers: NonNegativeInt = 0


def make_dataset(cfg: DataConfig) -> Dataset:
    """The world on the fly, its landmark sequences (``source: sequences``, collated by padding),
    or a folder of images (``data.path``)."""
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

    return FolderDataset(cfg.path, size=cfg.size)
