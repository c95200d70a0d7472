"""Fixed-length blocks over token shards, and the Lightning DataModule that serves them.

Letters: L = ``block_len`` (tokens the model reads per sample), B = batch size.

A split's shards are one token stream of N tokens. Block ``i`` is the window
``tokens[i*s : i*s + L + 1]`` with stride ``s`` (default ``L``; it may cross a
shard boundary); its first L tokens are the input and its last L the target.
With ``s = L`` consecutive blocks share one token and ``(N - 1) // L`` blocks
cover the split; in general there are ``(N - 1 - L) // s + 1``.

Order: :class:`TextDataModule` gives each loader an explicit
``torch.utils.data.DistributedSampler`` with ``seed``. On one process it is a
seeded shuffle of all blocks; under DDP/FSDP each rank takes every
``world_size``-th block of the same permutation, so ranks see disjoint slices
(``drop_last=True``: at most ``world_size - 1`` blocks are left out so all
ranks get the same count). The permutation is a function of ``(seed, epoch)``
only; Lightning calls ``set_epoch`` at each epoch start and leaves an explicit
DistributedSampler in place, so a run resumed at an epoch boundary replays the
same order. Validation is not shuffled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ttt_video.data.epochs import replicas
from ttt_video.data.text.shards import DTYPES, load_shard_tokenizer, read_meta
from ttt_video.data.text.tokenizers import Tokenizer
from ttt_video.validation import check_positive


class TokenBlockDataset(Dataset):
    """Blocks of ``block_len + 1`` tokens from one split of a shard folder.

    Block ``i`` starts at token ``i * stride`` (``stride`` defaults to ``block_len``: disjoint
    blocks; a smaller stride gives overlapping windows, so every token is also read with more
    context, as the per-position evaluation wants).

    Construction reads only ``meta.json``; shards are memory-mapped on first
    access in each process, so the dataset pickles cheaply to loader workers.

    ``dataset[i]`` returns ``(inputs, targets)``: int64 tensors ``[L]`` with
    ``targets[t] == inputs[t + 1]`` for ``t < L - 1``.
    """

    def __init__(self, folder: str | Path, split: str, block_len: int, stride: int | None = None):
        check_positive({"block_len": block_len}, integer=True)
        stride = block_len if stride is None else stride
        if not 1 <= stride <= block_len:
            raise ValueError(f"stride must be in [1, block_len={block_len}], got {stride}")
        self.folder, self.split, self.block_len = Path(folder), split, block_len
        self.stride = stride
        meta = read_meta(self.folder)
        if split not in meta["splits"]:
            raise KeyError(f"{folder}: no split {split!r} (has {sorted(meta['splits'])})")
        shards = meta["splits"][split]["shards"]
        self.files = [s["file"] for s in shards]
        sizes = np.array([s["tokens"] for s in shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)])  # [n_shards + 1]
        self.num_tokens = int(self.starts[-1])
        self.dtype = DTYPES[meta["dtype"]]
        self._maps: list[np.memmap] | None = None

    def __len__(self) -> int:
        if self.num_tokens <= self.block_len:
            return 0
        return (self.num_tokens - 1 - self.block_len) // self.stride + 1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}

    def _shard_maps(self) -> list[np.memmap]:
        if self._maps is None:
            self._maps = [
                np.memmap(self.folder / f, dtype=self.dtype, mode="r") for f in self.files
            ]
        return self._maps

    def tokens(self, start: int, stop: int) -> np.ndarray:
        """Tokens ``[start, stop)`` of the split's stream as int64 ``[stop - start]``."""
        if not 0 <= start <= stop <= self.num_tokens:
            raise IndexError(f"token range [{start}, {stop}) outside [0, {self.num_tokens})")
        maps = self._shard_maps()
        out = np.empty(stop - start, dtype=np.int64)
        shard = int(np.searchsorted(self.starts, start, side="right")) - 1
        pos = start
        while pos < stop:
            lo, hi = int(self.starts[shard]), int(self.starts[shard + 1])
            end = min(stop, hi)
            out[pos - start : end - start] = maps[shard][pos - lo : end - lo]
            pos, shard = end, shard + 1
        return out

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"block {index} outside [0, {len(self)})")
        start = index * self.stride
        block = torch.from_numpy(self.tokens(start, start + self.block_len + 1))
        return block[:-1], block[1:]


class TextDataModule(L.LightningDataModule):
    """Train/val loaders of :class:`TokenBlockDataset` over a shard folder.

    Batches are ``(inputs, targets)``, int64 ``[B, L]``. See the module
    docstring for the order and the per-rank split.
    """

    def __init__(
        self,
        data_dir: str | Path,
        block_len: int,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.data_dir, self.block_len = Path(data_dir), block_len
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.meta = read_meta(self.data_dir)
        self.datasets: dict[str, TokenBlockDataset] = {}

    @property
    def vocab_size(self) -> int:
        """Vocabulary size of the shards' tokenizer (the model's embedding rows)."""
        return self.meta["vocab_size"]

    def tokenizer(self) -> Tokenizer:
        """The tokenizer the shards were made with."""
        return load_shard_tokenizer(self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        for split, s in self.meta["splits"].items():
            if s["tokens"] and split not in self.datasets:
                self.datasets[split] = TokenBlockDataset(self.data_dir, split, self.block_len)

    def _replicas(self) -> tuple[int, int]:
        return replicas(self.trainer)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        dataset = self.datasets[split]
        world, rank = self._replicas()
        if len(dataset) < world:
            raise ValueError(f"{self.data_dir}: {split} has {len(dataset)} blocks < {world} ranks")
        sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=self.seed, drop_last=True
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=shuffle,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (by ``seed`` and epoch) full batches of training blocks."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation blocks in order (an empty list when the folder has no validation split)."""
        if not self.meta["splits"]["val"]["tokens"]:
            return []
        return self._loader("val", shuffle=False)


class StepBatchSampler(Sampler[list[int]]):
    """Endless per-rank batches of block indices from a seeded global stream.

    Global position ``p`` is block ``perm_e[p % n]`` with ``e = p // n`` and ``perm_e`` a
    permutation of the ``n`` blocks seeded by ``(seed, e)``. Batch ``k`` of rank ``r`` holds
    positions ``(k * world + r) * batch_size + [0, batch_size)``; iteration starts at
    ``k = start``.
    """

    def __init__(self, n: int, batch_size: int, world: int, rank: int, seed: int, start: int = 0):
        if n <= 0:
            raise ValueError(f"n: the split has no blocks (n={n})")
        self.n, self.batch_size, self.world, self.rank = n, batch_size, world, rank
        self.seed, self.start = seed, start
        self._perm: tuple[int, torch.Tensor] | None = None

    def _block(self, position: int) -> int:
        epoch, i = divmod(position, self.n)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return int(self._perm[1][i])

    def batch(self, k: int) -> list[int]:
        """Block indices of this rank's batch ``k``."""
        first = (k * self.world + self.rank) * self.batch_size
        return [self._block(first + j) for j in range(self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            yield self.batch(k)
            k += 1


class LMDataModule(TextDataModule):
    """:class:`TextDataModule` whose training loader resumes exactly: batch ``k`` of the run is
    batch ``k`` of a :class:`StepBatchSampler`, and a resumed run starts at
    ``k = global_step * accumulate_grad_batches``."""

    def train_dataloader(self) -> DataLoader:
        self.setup()
        world, rank = self._replicas()
        start = 0
        if self.trainer is not None:
            start = self.trainer.global_step * self.trainer.accumulate_grad_batches
        sampler = StepBatchSampler(
            len(self.datasets["train"]), self.batch_size, world, rank, self.seed, start
        )
        return DataLoader(
            self.datasets["train"],
            batch_sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
