"""Deterministic on-the-fly data: every item is a pure function of (seed, epoch, index).

``EpochSampler`` yields ``epoch * n + i``; datasets built on it decode that back into
``(epoch, i)`` and seed a generator with ``(seed, epoch, i)``, so an item is the same whatever the
worker count or order, and changes from epoch to epoch. Lightning calls ``set_epoch`` on any
sampler that has it at the start of every epoch. Under DDP each rank takes every
``world``-th index of the epoch's permutation (the run sets ``use_distributed_sampler=False``
so that Lightning does not wrap samplers itself), and every ``world``-th item of the
validation and test sets (``ShardSampler``), whose metrics the modules then average over
the ranks (``sync_dist``).
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def replicas(trainer: L.Trainer | None) -> tuple[int, int]:
    """``(world size, rank)`` of the trainer, else of ``torch.distributed``, else ``(1, 0)``."""
    if trainer is not None:
        return trainer.world_size, trainer.global_rank
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class EpochSampler(Sampler[int]):
    """Indices ``epoch * n + i`` for ``i`` in ``0..n-1`` (shuffled per epoch when ``shuffle``).

    With ``world > 1``, rank ``rank`` yields positions ``rank, rank + world, ...`` of the
    epoch's order, ``n // world`` of them (the ranks' shares are disjoint; the last
    ``n % world`` items of the epoch are skipped).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, world: int = 1, rank: int = 0):
        if not 0 <= rank < world:
            raise ValueError(f"rank: expected 0 <= rank < world={world}, got {rank}")
        if n < world:
            raise ValueError(f"n: {n} items cannot be shared by {world} ranks")
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self.world, self.rank = world, rank

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose items the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.world

    def __iter__(self) -> Iterator[int]:
        order = torch.arange(self.n)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        mine = order[self.rank : len(self) * self.world : self.world]
        return iter((self.epoch * self.n + mine).tolist())


class ShardSampler(Sampler[int]):
    """Items ``rank, rank + world, ...`` of ``0..n-1`` in order: every item once over all ranks.

    The shares differ by at most one item (none is repeated or dropped); ``n >= world``, so
    that every rank has a share.
    """

    def __init__(self, n: int, world: int = 1, rank: int = 0):
        if not 0 <= rank < world:
            raise ValueError(f"rank: expected 0 <= rank < world={world}, got {rank}")
        if n < world:
            raise ValueError(f"n: {n} items cannot be shared by {world} ranks")
        self.n, self.world, self.rank = n, world, rank

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))


def item_rng(seed: int, index: int, n: int) -> np.random.Generator:
    """The generator of item ``index`` (``epoch * n + i`` from ``EpochSampler``, or plain ``i``)."""
    epoch, i = divmod(int(index), n)
    return np.random.default_rng([seed, epoch, i])


class EpochDataModule(L.LightningDataModule):
    """Loaders over ``self.train`` (through ``EpochSampler``), ``self.val`` and ``self.test``.

    Subclasses set those three datasets in ``setup`` (and ``collate_fn`` when items need one).
    """

    train: Dataset
    val: Dataset
    test: Dataset
    collate_fn = None

    def __init__(self, batch_size: int, num_workers: int, seed: int):
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed

    def _loader(self, dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        world, rank = replicas(self.trainer)
        return self._loader(self.train, EpochSampler(len(self.train), self.seed, True, world, rank))

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        """``dataset`` in order, this rank's ``ShardSampler`` share of it."""
        return self._loader(dataset, ShardSampler(len(dataset), *replicas(self.trainer)))

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.val)

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader(self.test)
