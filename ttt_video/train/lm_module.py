"""LightningModule of the language model: the loss, the optimiser and logging, nothing else.

Letters: ``B`` batch, ``T`` tokens per block, ``V`` vocabulary size.

The paper's recipe (TTT_SPEC section 6), all from ``OptimConfig``:

- AdamW (betas 0.9, 0.95), weight decay 0.1 on matrices only: the usual practice of
  GPT-NeoX/Llama trainers, which leave norms' gains, biases and the (tied) embedding
  undecayed. Here "matrix" means a parameter with 2 or more dimensions that is not the
  embedding; the TTT inner initial weights ``W1, W2: [H, d, d']`` and the learning-rate gate
  ``[H, D]`` are decayed, their biases and the inner LayerNorm's ``[H, d]`` gain/shift are not.
- Linear warm-up over ``warmup_fraction`` of the schedule, then cosine to ``min_lr``.
- Gradient clipping is the Trainer's (``gradient_clip_val``), set by the runner.
- ``ttt_base_lr_start``: before every optimiser step, each TTT layer's inner ``base_lr``
  attribute (the scale of its learning-rate gate, read at every forward) is set on the
  same warm-up ramp, from ``ttt_base_lr_start`` to the layer's configured value.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttt_video.layers.ttt import TTTBase
from ttt_video.models import LanguageModel, LMConfig

from .config import OptimConfig


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based).

    Linear from ``1/warmup`` to 1 over ``warmup`` steps, then a cosine from 1 down to
    ``floor`` (= ``min_lr / lr``) at ``step == total``; ``floor`` after that.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_steps(optim: OptimConfig, total: int) -> int:
    """Steps of the linear warm-up for a schedule of ``total`` steps."""
    return round(optim.warmup_fraction * total)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decayed matrices and undecayed rest (see the module docstring)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def adamw_with_schedule(
    model: nn.Module, o: OptimConfig, total_steps: int, warmup: int, progress=None
) -> dict:
    """AdamW over ``param_groups`` with a per-step LambdaLR: linear warm-up, then cosine to
    ``o.min_lr`` (``lr_factor``). ``progress`` maps the scheduler's step to the step of the
    schedule (identity when None). Returns Lightning's ``configure_optimizers`` dict."""
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=o.betas, eps=o.eps)
    floor = o.min_lr / o.lr

    def factor(step: int) -> float:
        return lr_factor(step if progress is None else progress(step), total_steps, warmup, floor)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


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


class LMModule(L.LightningModule):
    """Next-token cross-entropy on ``(inputs, targets): int64 [B, T]`` batches.

    Args:
        model_cfg: the language model to build.
        optim: optimiser and schedule.
        total_steps: length of the learning-rate schedule in optimiser steps.
    """

    def __init__(self, model_cfg: LMConfig, optim: OptimConfig, total_steps: int) -> None:
        super().__init__()
        self.model = LanguageModel(model_cfg)
        self.optim = optim
        self.total_steps = total_steps
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
            fraction = (self.global_step + 1) / self.warmup if self.warmup else 1.0
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

    def configure_optimizers(self):
        return adamw_with_schedule(self.model, self.optim, self.total_steps, self.warmup)
