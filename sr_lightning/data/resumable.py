"""A training loader whose place in the epoch is part of the checkpoint (exact resume).

Lightning saves and restores a train loader's position when the loader has ``state_dict`` /
``load_state_dict`` (its "stateful dataloader" support); otherwise a run resumed mid-epoch
starts the epoch's order over and draws other crops. Here every random choice of the loader
is a function of ``(seed, epoch, slot)``, where ``slot`` is a sample's place in the epoch:

* the order of the epoch is a permutation seeded by ``(seed, epoch)``, in the main process;
* the crop positions of a batch come from a generator seeded by its first sample's key, so
  they do not depend on which worker cuts the batch or on the workers' RNG states.

So the loader's state is three integers (seed, epoch, batches handed out this epoch), and a
resumed loader skips to the next batch without replaying the epoch. The augmentation draws
on the device use the global RNG, which :class:`~sr_lightning.runtime.faults.RNGStateCheckpoint`
restores; the loader never touches that RNG (its worker seeds come from its own generator).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

# keys stay below 2**62, so key + slot fits the int64 that torch.Generator.manual_seed takes
_KEY_BITS = 62


def epoch_key(seed: int, epoch: int) -> int:
    """A well-mixed base key for one epoch of one seed (``numpy.random.SeedSequence``)."""
    state = np.random.SeedSequence([seed & (2**63 - 1), epoch]).generate_state(1, np.uint64)
    return int(state[0]) >> (64 - _KEY_BITS)


class KeyedSampler(DistributedSampler):
    """Shuffled ``(index, key)`` pairs: this rank's share of an epoch, seeded by ``(seed, epoch)``.

    A DistributedSampler, so Lightning shards nothing itself under DDP (each rank takes every
    ``world``-th slot, padded like PyTorch's sampler); on one process it is the whole epoch.
    ``skip`` samples are left out at the start of the next iteration only (a resumed epoch).
    """

    def __init__(self, dataset: Dataset, seed: int | None = None, shuffle: bool = True) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        world = dist.get_world_size() if distributed else 1
        rank = dist.get_rank() if distributed else 0
        # torch.initial_seed() is the run's seed after seed_everything, and reading it draws
        # nothing from the global RNG
        seed = torch.initial_seed() if seed is None else seed
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
        self.skip = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_key(self.seed, self.epoch))
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        order += order[: self.total_size - n]  # pad so every rank gets as many samples
        base = epoch_key(self.seed, self.epoch + 2**31)  # not the permutation's key
        slots = range(self.rank, self.total_size, self.num_replicas)
        start, self.skip = self.skip, 0
        for slot in slots[start:]:
            yield order[slot], base + slot


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`KeyedSampler` that Lightning checkpoints and restores.

    Build it like a DataLoader with ``sampler=KeyedSampler(...)`` and ``drop_last=True`` (a
    resumed epoch skips whole batches). Its ``__init__`` is DataLoader's own, so Lightning can
    rebuild it (``overfit_batches`` swaps in a sequential sampler of plain indices).
    """

    def __iter__(self) -> Iterator[Any]:
        # Started on the first batch, not here: Lightning creates the epoch's iterator before
        # it calls the sampler's set_epoch, and workers would fetch the wrong epoch's order.
        counting = getattr(self, "_counting", None)
        if counting is None or not self.persistent_workers:
            counting = self._counting = _CountingIterator(self)
        counting.inner = None
        return counting

    def _start(self) -> Iterator[Any]:
        sampler = self.sampler
        self._batches = getattr(sampler, "skip", 0) // self.batch_size
        self._epoch = getattr(sampler, "epoch", 0)  # the epoch these batches belong to
        if isinstance(sampler, KeyedSampler) and self.generator is not None:
            # the workers' base seed (drawn from this generator) is a function of the epoch too
            self.generator.manual_seed(epoch_key(sampler.seed, sampler.epoch))
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        sampler = self.sampler
        if not isinstance(sampler, KeyedSampler):
            return {}
        return {
            "seed": int(sampler.seed),
            "epoch": int(getattr(self, "_epoch", sampler.epoch)),
            "batches": int(getattr(self, "_batches", 0)),
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.sampler
        if not state or not isinstance(sampler, KeyedSampler):
            return
        sampler.seed = int(state["seed"])
        batches = int(state["batches"])
        if batches >= len(self):  # saved after the epoch's last batch: the next epoch starts
            sampler.set_epoch(int(state["epoch"]) + 1)
            batches = 0
        else:
            sampler.set_epoch(int(state["epoch"]))
        sampler.skip = batches * self.batch_size


class _CountingIterator:
    """The DataLoader's own iterator, started on first use, counting the batches it hands out.

    One object per epoch, or one for the whole run with persistent workers, like the
    DataLoader's own iterator; its attributes (``_workers``, ...) are that iterator's.
    """

    def __init__(self, loader: ResumableLoader) -> None:
        self.loader = loader
        self.inner: Iterator[Any] | None = None

    def _started(self) -> Iterator[Any]:
        if self.inner is None:
            self.inner = self.loader._start()
        return self.inner

    def __iter__(self) -> _CountingIterator:
        return self

    def __next__(self) -> Any:
        batch = next(self._started())
        self.loader._batches += 1
        return batch

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # _workers, _shutdown_workers, ...
        if name.startswith("__") or name in ("inner", "loader"):
            raise AttributeError(name)
        return getattr(self._started(), name)


def resumable_loader(
    dataset: Dataset, batch_size: int, seed: int | None = None, **kwargs: Any
) -> ResumableLoader:
    """A shuffled, resumable training loader dropping the last partial batch."""
    sampler = KeyedSampler(dataset, seed)
    return ResumableLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        # worker seeds are drawn from this generator, not from the global RNG
        generator=torch.Generator(),
        **kwargs,
    )
