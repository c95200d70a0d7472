"""The optimiser and learning-rate schedule every task uses (the paper's recipe).

- AdamW (betas, eps, weight decay from ``OptimConfig``), weight decay on matrices only: the
  usual practice of GPT-NeoX/Llama trainers, which leave norms' gains, biases and the
  (tied) embedding undecayed. Here "matrix" means a parameter with 2 or more dimensions
  that is not an embedding; the TTT inner initial weights ``W1, W2: [H, d, d']`` and the
  learning-rate gate ``[H, D]`` are decayed, their biases and the inner LayerNorm's
  ``[H, d]`` gain/shift are not.
- Linear warm-up over ``warmup_fraction`` of the schedule, then cosine to ``min_lr``.
- Gradient clipping is the Trainer's (``gradient_clip_val``), set by the runner.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ttt_video.train.config import OptimConfig


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
