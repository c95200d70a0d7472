"""LightningModule of the language model: the loss, the optimiser and logging, nothing else.

Letters: ``B`` batch, ``T`` tokens per block, ``V`` vocabulary size.

The paper's recipe (ttt_video/kernels/README.md section 9), all from ``OptimConfig``:

- AdamW with weight decay on matrices only, linear warm-up then cosine to ``min_lr``
  (``ttt_video.train.optim``).
- ``ttt_base_lr_start``: before every optimiser step, each TTT layer's inner ``base_lr``
  attribute (the scale of its learning-rate gate, read at every forward) is set on the
  same warm-up ramp, from ``ttt_base_lr_start`` to the layer's configured value.
- ``time_budget_s``: train to a wall-clock budget (``ttt_video.train.time_budget``).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttt_video.layers.ttt import TTTBase
from ttt_video.models import LanguageModel, LMConfig
from ttt_video.models.compiling import compile_model
from ttt_video.train.config import OptimConfig
from ttt_video.train.optim import adamw_with_schedule, warmup_steps
from ttt_video.train.sharding import configure_sharding
from ttt_video.train.time_budget import TimeBudget


def set_ttt_base_lr(model: nn.Module, start: float, fraction: float) -> float | None:
    """Set every TTT layer's ``base_lr`` to ``start + fraction * (target - start)``.

    The target is the layer's configured ``cfg.base_lr``. Returns the value set on the
    first layer (None when the model has no TTT layer).
    """
    first = None
    for m in model.modules():
        if isinstance(m, TTTBase):
            m.base_lr = start + min(1.0, fraction) * (m.cfg.base_lr - start)
            first = m.base_lr if first is None else first
    return first


class LMModule(TimeBudget, L.LightningModule):
    """Next-token cross-entropy on ``(inputs, targets): int64 [B, T]`` batches.

    Args:
        model_cfg: the language model to build.
        optim: optimiser and schedule.
        total_steps: length of the learning-rate schedule in optimiser steps.
        time_budget_s: stop training after this many seconds (None: after the steps).
    """

    def __init__(
        self,
        model_cfg: LMConfig,
        optim: OptimConfig,
        total_steps: int,
        time_budget_s: float | None = None,
    ) -> None:
        super().__init__()
        self.model = LanguageModel(model_cfg)
        self.optim = optim
        self.total_steps, self.time_budget_s = total_steps, time_budget_s
        self.warmup = warmup_steps(optim, total_steps)
        self._micro_losses: list[Tensor] = []

    def loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """Mean next-token cross-entropy (nats) of a batch ``([B, T], [B, T])``."""
        inputs, targets = batch
        logits, _ = self.model(inputs)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def tokens_in(self, batch: tuple[Tensor, Tensor]) -> int:
        """Tokens the model reads in ``batch`` (for throughput)."""
        return batch[0].numel()

    def flops_per_token(self) -> float:
        """Training FLOPs per token, ``6 * parameters`` (attention and inner-loop FLOPs excluded)."""
        return 6.0 * self.model.num_parameters()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.optim.ttt_base_lr_start is not None:
            step = self.progress(self.global_step + 1)
            fraction = step / self.warmup if self.warmup else 1.0
            set_ttt_base_lr(self.model, self.optim.ttt_base_lr_start, fraction)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self._micro_losses.append(loss.detach())
        if len(self._micro_losses) == self.trainer.accumulate_grad_batches:
            step_loss = torch.stack(self._micro_losses).mean()
            self._micro_losses = []
            self.log("train/loss", step_loss, prog_bar=True, sync_dist=True)
            self.log("train/lr", self.lr_schedulers().get_last_lr()[0])
            if self.optim.ttt_base_lr_start is not None:
                first = next(m for m in self.model.modules() if isinstance(m, TTTBase))
                self.log("train/ttt_base_lr", first.base_lr)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.stop_when_spent()

    def on_validation_epoch_start(self) -> None:
        self._val_losses: list[Tensor] = []

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self._val_losses.append(loss.detach())
        return loss

    def on_validation_epoch_end(self) -> None:
        if not self._val_losses:
            return
        mean = torch.stack(self._val_losses).mean()
        mean = self.trainer.strategy.reduce(mean, reduce_op="mean")
        self.log("val/loss", mean, prog_bar=True)
        self.log("val/ppl", torch.exp(mean))

    def configure_model(self) -> None:
        """Shard the model over the processes when ``trainer.strategy`` is ``fsdp``, then
        compile it when its config says ``compile``."""
        configure_sharding(self)
        if self.model.cfg.compile:
            compile_model(self.model)

    def configure_optimizers(self):
        return adamw_with_schedule(
            self.model, self.optim, self.total_steps, self.warmup, progress=self.progress
        )
