"""The ``lm`` task: a language model trained on token shards (``data_prep/tokenize_text.py``).

Run-file sections (see ``configs/lm/``)::

    model:  {preset: ttt_linear_debug, <any LMConfig field>: value, ...}
    data:   LMDataConfig fields (shard folder, block length, micro-batch size)

``model.preset`` names a registered preset (``ttt_video.models.list_models()``) whose fields
the other keys override; without it the fields fill a default ``LMConfig``. The resolved
config lists every ``LMConfig`` field, so the saved run file does not depend on presets.

Data order (exact resume): training batches come from :class:`StepBatchSampler`, an endless
seeded stream of blocks (a fresh permutation per pass over the data) cut into global
batches of ``world_size * batch_size`` blocks, rank ``r`` taking the ``r``-th slice. Batch
``k`` depends only on ``(seed, k, world_size, batch_size)``; a resumed run starts at
``k = global_step * accumulate_grad_batches``, so it sees exactly the batches an
uninterrupted run would, and a 2-process run sees the same global batches as a
1-process run with twice the micro-batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from ttt_video.data.text import META_FILE, read_meta
from ttt_video.data.text_dataset import TextDataModule
from ttt_video.models import LanguageModel, LMConfig, config_from_name
from ttt_video.paths import cache_dir

from .config import ConfigError, RunConfig, from_dict, plain
from .lm_module import LMModule
from .tasks import register_task

CACHE_PREFIX = "cache:"


@dataclass
class LMDataConfig:
    """Token shards and how they are cut into batches."""

    path: str = "cache:text/austen/byte"
    """Shard folder; ``cache:<rel>`` means ``<cache>/<rel>`` (``ttt_video.paths.cache_dir``)."""
    prepare: str = "python data_prep/austen.py"
    """The command that creates ``path`` (shown when the folder is missing)."""
    block_len: int = 256
    """``T``, tokens per training sequence (the context length)."""
    batch_size: int = 8
    """Sequences per micro-batch on one device."""
    num_workers: int = 0
    """DataLoader worker processes per device."""

    def __post_init__(self) -> None:
        for name in ("block_len", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers: expected >= 0, got {self.num_workers}")

    @property
    def tokens_per_batch(self) -> int:
        """Tokens in one micro-batch on one device."""
        return self.block_len * self.batch_size

    def folder(self) -> Path:
        """The shard folder with ``cache:`` resolved."""
        if self.path.startswith(CACHE_PREFIX):
            return cache_dir(*Path(self.path[len(CACHE_PREFIX) :]).parts)
        return Path(self.path).expanduser()


def check_shards(data: LMDataConfig) -> dict:
    """The shard folder's ``meta.json``; ``FileNotFoundError`` saying how to make it."""
    folder = data.folder()
    if not (folder / META_FILE).is_file():
        raise FileNotFoundError(
            f"data.path: {folder} holds no token shards ({META_FILE} missing); "
            f"make them with: {data.prepare}"
        )
    return read_meta(folder)


def parse_model(data: object, where: str) -> LMConfig:
    """``LMConfig`` from a ``model`` mapping: an optional ``preset`` plus field overrides."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    fields = dict(data)
    preset = fields.pop("preset", None)
    base = {}
    if preset is not None:
        try:
            base = plain(config_from_name(str(preset)))
        except ValueError as err:
            raise ConfigError(f"{where}.preset: {err}".replace("name: ", "")) from err
    return from_dict(LMConfig, {**base, **fields}, where)


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
    """:class:`TextDataModule` whose training loader resumes exactly (module docstring)."""

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


@register_task(
    "lm", model=parse_model, data=LMDataConfig, build_model=lambda run: LanguageModel(run.model)
)
def build_lm(run: RunConfig) -> tuple[LMModule, LMDataModule]:
    """The LM module and its data for a resolved run (checks the shards and the vocabulary)."""
    meta = check_shards(run.data)
    model_cfg: LMConfig = run.model
    if model_cfg.vocab_size < meta["vocab_size"]:
        raise ConfigError(
            f"model.vocab_size: {model_cfg.vocab_size} is smaller than the tokenizer's "
            f"{meta['vocab_size']} in {run.data.folder()}"
        )
    if run.trainer.gradient_checkpointing:
        model_cfg = replace(model_cfg, gradient_checkpointing=True)
    datamodule = LMDataModule(
        run.data.folder(),
        run.data.block_len,
        run.data.batch_size,
        num_workers=run.data.num_workers,
        seed=run.trainer.seed,
    )
    total = run.optim.schedule_steps or run.trainer.max_steps
    return LMModule(model_cfg, run.optim, total), datamodule
