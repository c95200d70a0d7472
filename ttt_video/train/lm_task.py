"""The ``lm`` task: a language model trained on token shards (``data_prep/tokenize_text.py``).

Run-file sections (see ``configs/lm/``)::

    model:  {preset: ttt_linear_debug, <any LMConfig field>: value, ...}
    data:   LMDataConfig fields (shard folder, block length, micro-batch size)

``model`` is read by ``ttt_video.train.presets.parse_model`` (a preset plus overrides, every
field listed once resolved); ``trainer.gradient_checkpointing`` turns it on in the model.

Data order (exact resume): training batches come from
:class:`ttt_video.data.text.dataset.StepBatchSampler`, an endless
seeded stream of blocks (a fresh permutation per pass over the data) cut into global
batches of ``world_size * batch_size`` blocks, rank ``r`` taking the ``r``-th slice. Batch
``k`` depends only on ``(seed, k, world_size, batch_size)``; a resumed run starts at
``k = global_step * accumulate_grad_batches``, so it sees exactly the batches an
uninterrupted run would, and a 2-process run sees the same global batches as a
1-process run with twice the micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ttt_video.data.text.dataset import LMDataModule
from ttt_video.data.text.shards import META_FILE, read_meta
from ttt_video.models import LanguageModel, LMConfig
from ttt_video.paths import cache_dir
from ttt_video.train.config import ConfigError, RunConfig
from ttt_video.train.lm_module import LMModule
from ttt_video.train.presets import model_parser, with_trainer_options
from ttt_video.train.tasks import register_task
from ttt_video.train.time_budget import run_time_budget
from ttt_video.validation import check_positive

CACHE_PREFIX = "cache:"


@dataclass
class LMDataConfig:
    """Token shards and how they are cut into batches."""

    path: str = "cache:text/austen/byte"
    """Shard folder; ``cache:<rel>`` means ``<cache>/<rel>`` (``ttt_video.paths.cache_dir``)."""
    prepare: str = "ttt-video prepare austen"
    """The command that creates ``path`` (shown when the folder is missing)."""
    block_len: int = 256
    """``T``, tokens per training sequence (the context length)."""
    batch_size: int = 8
    """Sequences per micro-batch on one device."""
    num_workers: int = 0
    """DataLoader worker processes per device."""
    time_budget_s: float | None = None
    """Stop training after this many seconds (the LR schedule follows elapsed time)."""

    def __post_init__(self) -> None:
        check_positive(self, "block_len", "batch_size")
        check_positive(self, "time_budget_s", allow_none=True)
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
            f"data.path: {folder} holds no token shards ({META_FILE} missing); make them with "
            f"{data.prepare} (this config's data) or, from your own text, ttt-video prepare "
            f"text --input FILE_OR_FOLDER --out {folder}"
        )
    return read_meta(folder)


@register_task(
    "lm",
    model=model_parser(LMConfig),
    data=LMDataConfig,
    build_model=lambda run: LanguageModel(with_trainer_options(run.model, run.trainer)),
)
def build_lm(run: RunConfig) -> tuple[LMModule, LMDataModule]:
    """The LM module and its data for a resolved run (checks the shards and the vocabulary)."""
    meta = check_shards(run.data)
    model_cfg: LMConfig = with_trainer_options(run.model, run.trainer)
    if model_cfg.vocab_size < meta["vocab_size"]:
        raise ConfigError(
            f"model.vocab_size: {model_cfg.vocab_size} is smaller than the tokenizer's "
            f"{meta['vocab_size']} in {run.data.folder()}"
        )
    train_tokens = meta["splits"]["train"]["tokens"]
    if train_tokens <= run.data.block_len:
        raise ConfigError(
            f"data.block_len: {run.data.block_len} tokens per sample, but the training split "
            f"of {run.data.folder()} has {train_tokens:,}: lower it or add text"
        )
    datamodule = LMDataModule(
        run.data.folder(),
        run.data.block_len,
        run.data.batch_size,
        num_workers=run.data.num_workers,
        seed=run.trainer.seed,
    )
    total = run.optim.schedule_steps or run.trainer.max_steps
    return LMModule(model_cfg, run.optim, total, run_time_budget(run)), datamodule
