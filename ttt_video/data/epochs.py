"""Deterministic on-the-fly data: every item is a pure function of (seed, split, epoch, index).

``EpochSampler`` yields ``epoch * n + i``; datasets built on it decode that back into
``(epoch, i)`` and draw from ``item_rng``, so an item is the same whatever the worker count or
order, and changes from epoch to epoch. Lightning calls ``set_epoch`` on any sampler that has it
at the start of every epoch. Under DDP each rank takes every ``world``-th index of the epoch's
permutation (the run sets ``use_distributed_sampler=False`` so that Lightning does not wrap
samplers itself), and every ``world``-th item of the validation and test sets
(``ShardSampler``), whose metrics the modules then average over the ranks (``sync_dist``).

Random streams: one ``numpy.random.SeedSequence`` per stream, the seed as its entropy and the
stream's place as its spawn key (``(split, epoch, i)`` for an item, ``(order, epoch)`` for an
epoch's permutation). Streams with different keys or seeds are independent, so no trainer
seed, epoch or index makes a training item repeat a validation or test item (seed arithmetic
such as ``seed * K + epoch``, or entropy lists such as ``[seed, epoch, i]``, whose trailing zeros
NumPy ignores, can collide).

Exact resume: ``EpochDataModule.train_dataloader`` starts its sampler after the batches the
trainer has already stepped on (``trainer.global_step``), in the right epoch, as the language
model's ``StepBatchSampler`` does, so a resumed run reads the batches the uninterrupted run
would have.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
"""First spawn-key entry of each split's item streams."""
ORDER_STREAM = 3
"""First spawn-key entry of the epochs' permutations."""


def stream_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of stream ``key`` of ``seed`` (``SeedSequence(seed, spawn_key=key)``)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(key)))


def item_rng(seed: int, index: int, n: int, split: str = "train") -> np.random.Generator:
    """The generator of item ``index`` of ``split`` (``epoch * n + i`` from ``EpochSampler``, or
    plain ``i``): stream ``(split, epoch, i)`` of ``seed``."""
    epoch, i = divmod(int(index), n)
    return stream_rng(seed, SPLIT_STREAMS[split], epoch, i)


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
    ``n % world`` items of the epoch are skipped). ``start_after`` resumes mid-epoch.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, world: int = 1, rank: int = 0):
        if not 0 <= rank < world:
            raise ValueError(f"rank: expected 0 <= rank < world={world}, got {rank}")
        if n < world:
            raise ValueError(f"n: {n} items cannot be shared by {world} ranks")
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self.world, self.rank = world, rank
        self.resume: tuple[int, int] = (0, 0)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose items the next iteration yields."""
        self.epoch = epoch

    def start_after(self, batches: int, batch_size: int) -> None:
        """Start after this rank's first ``batches`` batches of ``batch_size`` (the loader's,
        ``drop_last=False``: an epoch is ``ceil(len(self) / batch_size)`` batches): select
        their epoch, whose first iteration then skips the items already read."""
        per_epoch = math.ceil(len(self) / batch_size)
        self.epoch, done = divmod(batches, per_epoch)
        self.resume = (self.epoch, done * batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's order of ``0..n-1``, int64 ``[n]``."""
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.from_numpy(stream_rng(self.seed, ORDER_STREAM, epoch).permutation(self.n))

    def __len__(self) -> int:
        return self.n // self.world

    def __iter__(self) -> Iterator[int]:
        mine = self.order(self.epoch)[self.rank : len(self) * self.world : self.world]
        skip = self.resume[1] if self.epoch == self.resume[0] else 0
        return iter((self.epoch * self.n + mine[skip:]).tolist())


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


def batches_done(trainer: L.Trainer | None, batches_per_epoch: int) -> int:
    """Training batches a (resumed) trainer has stepped on: ``global_step`` optimiser steps of
    ``accumulate_grad_batches`` batches each, except the last step of an epoch, which takes
    the epoch's remaining batches (Lightning steps on an epoch's last batch). 0 without one."""
    if trainer is None:
        return 0
    acc = trainer.accumulate_grad_batches
    epochs, steps = divmod(trainer.global_step, math.ceil(batches_per_epoch / acc))
    return epochs * batches_per_epoch + steps * acc


class EpochDataModule(L.LightningDataModule):
    """Loaders over ``self.train`` (through ``EpochSampler``), ``self.val`` and ``self.test``.

    Subclasses set those three datasets in ``setup`` (and ``collate_fn`` when items need one).
    The training loader of a resumed run starts where the interrupted run stopped.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    collate_fn = None

    def __init__(self, batch_size: int, num_workers: int, seed: int):
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed

    def _loader(
        self, dataset: Dataset, sampler: Sampler | None = None, collate_fn=None
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_fn or self.collate_fn,
            persistent_workers=self.num_workers > 0,
        )

    def train_sampler(self, dataset: Dataset) -> EpochSampler:
        """This rank's ``EpochSampler`` of ``dataset``, after the batches the trainer has done."""
        sampler = EpochSampler(len(dataset), self.seed, True, *replicas(self.trainer))
        # Lightning warns that a mid-epoch resume replays the epoch's start; this one does not
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended")
        per_epoch = math.ceil(len(sampler) / self.batch_size)
        sampler.start_after(batches_done(self.trainer, per_epoch), self.batch_size)
        return sampler

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, self.train_sampler(self.train))

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        """``dataset`` in order, this rank's ``ShardSampler`` share of it."""
        return self._loader(dataset, ShardSampler(len(dataset), *replicas(self.trainer)))

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.val)

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader(self.test)
