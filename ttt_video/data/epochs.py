"""Deterministic on-the-fly data: every item is a pure function of (seed, epoch, index).

``EpochSampler`` yields ``epoch * n + i``; datasets built on it decode that back into
``(epoch, i)`` and seed a generator with ``(seed, epoch, i)``, so an item is the same whatever the
worker count or order, and changes from epoch to epoch. Lightning calls ``set_epoch`` on any
sampler that has it at the start of every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSampler(Sampler[int]):
    """Indices ``epoch * n + i`` for ``i`` in ``0..n-1`` (shuffled per epoch when ``shuffle``)."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose items the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        order = torch.arange(self.n)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        base = self.epoch * self.n
        return iter((base + order).tolist())


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
        return self._loader(self.train, EpochSampler(len(self.train), self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test)
