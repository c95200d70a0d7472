"""Choosing the next token from logits: temperature, top-k and nucleus (top-p) sampling.

Letters: ``B`` batch, ``V`` vocabulary size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ttt_video.validation import check_positive


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one token per row of ``logits: [B, V]``; returns ``[B]`` (int64).

    ``temperature == 0`` is greedy (arg-max). ``top_k`` keeps the ``k`` most likely tokens,
    ``top_p`` the smallest set whose probability reaches ``p`` (always at least one token).
    """
    if temperature < 0:
        raise ValueError(f"temperature: expected >= 0, got {temperature}")
    check_positive({"top_k": top_k}, integer=True, allow_none=True)
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p: expected a value in (0, 1] or None, got {top_p}")
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
