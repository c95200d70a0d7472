"""The recurrent state of a LaCT layer's fast weights, and how a call is cut into chunks.

Letters: ``B`` batch, ``H`` heads, ``d`` head dim, ``m = r d`` hidden width of the SwiGLU fast
weights, ``C`` chunk size. The fast weights are stored ``[out, in]``:
``W1, W3: [B, H, m, d]``, ``W2: [B, H, d, m]``, so that ``f(x) = W2 (silu(W1 x) * (W3 x))``.

Every token of a chunk takes its inner gradient at the weights the chunk started with, so a
stream cut inside a chunk is carried exactly by those weights plus the learning-rate weighted
sum of the gradients of the chunk's tokens seen so far and the position reached (the same
bookkeeping as ``TTTState``; kernels/README.md section 13).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

Matrices = tuple[Tensor, Tensor, Tensor]
"""``(W1, W2, W3)``-shaped triple: ``[B, H, m, d]``, ``[B, H, d, m]``, ``[B, H, m, d]``."""


@dataclass(frozen=True)
class LaCTState:
    """Fast-weight state of one LaCT layer for a batch of streams.

    Attributes:
        weights: ``(W1, W2, W3)``: the fast weights at the start of the current chunk.
        grads: ``sum_j eta_j grad_W l_j`` over the tokens of the current chunk seen so far
            (zeros when ``position == 0``), per matrix.
        momentum: the momentum buffers per matrix (None when momentum is off).
        position: tokens already consumed in the current chunk, ``0 <= position < C``.
    """

    weights: Matrices
    grads: Matrices
    momentum: Matrices | None
    position: int = 0

    @property
    def batch_size(self) -> int:
        return self.weights[0].shape[0]

    def tensors(self) -> list[Tensor]:
        """Every tensor of the state: weights, grads, then the momentum buffers if any."""
        return [*self.weights, *self.grads, *(self.momentum or ())]

    def nbytes(self) -> int:
        """Memory held by the state's tensors, in bytes (constant in the stream length)."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def detach(self) -> LaCTState:
        """A copy cut from the autograd graph (truncated back-propagation through time)."""
        momentum = None if self.momentum is None else _detach(self.momentum)
        return LaCTState(_detach(self.weights), _detach(self.grads), momentum, self.position)


def _detach(ts: Matrices) -> Matrices:
    return tuple(t.detach() for t in ts)


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the fast weights live in: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def lact_initial_state(
    weights: tuple[Tensor, Tensor, Tensor], batch_size: int, with_momentum: bool
) -> LaCTState:
    """Fresh state at the start of ``batch_size`` streams from the learned initial fast weights.

    Args:
        weights: ``(W1, W2, W3)``, each ``[H, out, in]`` or already batched ``[B, H, out, in]``.
        batch_size: ``B``.
        with_momentum: allocate zero momentum buffers (needed when momentum > 0).

    Returns:
        a ``LaCTState`` at position 0 whose weights are differentiable expansions of the given
        ones (gradients flow back to them), in at least float32.
    """
    ws = []
    for i, w in enumerate(weights):
        if w.ndim == 3:
            w = w.unsqueeze(0).expand(batch_size, *w.shape)
        if w.ndim != 4 or w.shape[0] != batch_size:
            raise ValueError(
                f"weights[{i}]: expected [H, out, in] or [{batch_size}, H, out, in], "
                f"got {tuple(w.shape)}"
            )
        ws.append(w.to(state_dtype(w.dtype)))
    zeros = tuple(torch.zeros_like(w) for w in ws)
    momentum = tuple(torch.zeros_like(w) for w in ws) if with_momentum else None
    return LaCTState(tuple(ws), zeros, momentum, 0)


def chunk_segments(position: int, length: int, chunk_size: int) -> list[tuple[int, int]]:
    """Cut ``length`` tokens that start ``position`` tokens into a chunk at the chunk borders.

    Returns ``[(start, end), ...]`` indices into the call's tokens: the rest of the current
    chunk first, then whole chunks, then what is left (the last segment may end mid-chunk).
    """
    segments, start = [], 0
    while start < length:
        end = min(length, start + chunk_size - (position if start == 0 else 0))
        segments.append((start, end))
        start = end
    return segments
