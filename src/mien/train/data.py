"""Training data: a loader whose order is a pure function of
(seed, epoch, batch), resumable mid-epoch (Lightning saves and restores its state)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from mien.errors import ConfigError


class StepBatchSampler:
    """Batches of a seeded per-epoch permutation; rank r of w takes every w-th batch slot, so
    the global batch is the same whatever the number of processes. ``start`` skips batches
    already consumed (set when resuming). The epoch is advanced by the loader when a pass is
    consumed, not by Lightning (no ``set_epoch``): Lightning counts a run stopped by max_steps
    as a finished epoch, which would skip the rest of that epoch on resume."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if n < batch_size * world:
            raise ConfigError(f"{n} training items cannot fill one batch of {batch_size} x {world} processes; "
                              "raise data.n or lower data.batch_size")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world)

    def __iter__(self):
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        start, self.start = self.start, 0
        for k in range(start, len(self)):
            slot = (k * self.world + self.rank) * self.batch_size
            yield perm[slot: slot + self.batch_size].tolist()


class WholeBatches(Dataset):
    """A view of a data set that makes a whole batch in one call (``dataset.batch(indices)``, as
    the world renders): item k of the view is the batch of the index list k, so a loader hands it
    the sampler's index lists and gets collated batches with no per-item split and re-collation."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices) -> dict:
        return self.dataset.batch(indices)


def as_is(batch):
    """The collate function of a loader over :class:`WholeBatches`: batches arrive collated."""
    return batch


class ResumableLoader(DataLoader):
    """A DataLoader with ``state_dict``/``load_state_dict`` (Lightning's stateful-loader protocol):
    the state is the epoch and the number of batches handed out, and restoring it skips exactly
    those batches without loading them. A data set with a ``batch(indices)`` method makes each
    batch in one call (:class:`WholeBatches`)."""

    def __init__(self, dataset, sampler: StepBatchSampler, num_workers: int = 0):
        if hasattr(dataset, "batch"):
            how = {"sampler": sampler, "batch_size": None, "collate_fn": as_is}
            dataset = WholeBatches(dataset)
        else:
            how = {"batch_sampler": sampler, "collate_fn": getattr(dataset, "collate", None)}
        super().__init__(dataset, num_workers=num_workers, persistent_workers=num_workers > 0, **how)
        self.step_sampler = sampler
        self.served = 0

    def __iter__(self):
        """The rest of the current epoch: a new iteration continues after the last batch handed
        out, so an iteration abandoned mid-epoch (Lightning does so when it resumes from the end
        of an epoch) loses nothing. The epoch advances as its last batch is handed out (a consumer
        that stops after len(loader) batches never resumes the generator past its last ``yield``)."""
        self.step_sampler.start = self.served
        for batch in super().__iter__():
            self.served += 1
            if self.served == len(self.step_sampler):
                self.step_sampler.epoch += 1
                self.served = 0
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.step_sampler.epoch, "served": self.served}

    def load_state_dict(self, state: dict) -> None:
        done, self.served = divmod(state["served"], max(1, len(self.step_sampler)))
        self.step_sampler.epoch = state["epoch"] + done
