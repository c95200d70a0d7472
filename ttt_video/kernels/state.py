"""The recurrent state of a TTT layer: the inner model's weights and what a decode step needs.

Letters: ``B`` batch, ``H`` heads, ``d`` head dim, ``L`` inner layers (1 for TTT-Linear,
2 for TTT-MLP), ``d_l -> d_{l+1}`` the widths of inner layer ``l`` (``d -> d`` for
TTT-Linear, ``d -> 4d -> d`` for TTT-MLP).

Inside a mini-batch every gradient is taken at the weights the mini-batch started with,
so a stream cut mid-mini-batch must carry those weights *and* the learning-rate weighted
sum of the gradients seen so far (``Gacc`` of the spec) plus the position reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TTTState:
    """State of one TTT layer for a batch of streams.

    Attributes:
        weights: per inner layer, ``[B, H, d_l, d_{l+1}]``: weights at the start of the
            current mini-batch.
        biases: per inner layer, ``[B, H, d_{l+1}]``.
        grad_weights: per inner layer, ``[B, H, d_l, d_{l+1}]``: sum over the tokens seen in
            the current mini-batch of ``lam_j * k_j^T G_j`` (zeros when ``position == 0``).
        grad_biases: per inner layer, ``[B, H, d_{l+1}]``: sum of ``lam_j * G_j``.
        position: tokens already consumed in the current mini-batch, ``0 <= position < b``.
    """

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]
    grad_weights: tuple[Tensor, ...]
    grad_biases: tuple[Tensor, ...]
    position: int = 0

    @property
    def num_layers(self) -> int:
        return len(self.weights)

    @property
    def batch_size(self) -> int:
        return self.weights[0].shape[0]

    def nbytes(self) -> int:
        """Memory held by the state's tensors, in bytes."""
        tensors = self.weights + self.biases + self.grad_weights + self.grad_biases
        return sum(t.numel() * t.element_size() for t in tensors)

    def detach(self) -> TTTState:
        """A copy cut from the autograd graph (for truncated back-propagation through time)."""
        return TTTState(
            tuple(t.detach() for t in self.weights),
            tuple(t.detach() for t in self.biases),
            tuple(t.detach() for t in self.grad_weights),
            tuple(t.detach() for t in self.grad_biases),
            self.position,
        )


# a pytree node for torch.export (states go in and out of exported models)
torch.export.register_dataclass(TTTState)


def initial_state(
    weights: tuple[Tensor, ...], biases: tuple[Tensor, ...], batch_size: int
) -> TTTState:
    """Fresh state at the start of a stream from the learned initial inner weights.

    Args:
        weights: per inner layer ``[H, d_l, d_{l+1}]`` or already batched ``[B, H, d_l, d_{l+1}]``.
        biases: per inner layer ``[H, d_{l+1}]`` or ``[B, H, d_{l+1}]``.
        batch_size: ``B``.

    Returns:
        a ``TTTState`` at position 0 whose tensors are differentiable views/expansions of
        the given parameters (gradients flow back to them).
    """
    ws = tuple(_batched(w, batch_size, 3, f"weights[{i}]") for i, w in enumerate(weights))
    bs = tuple(_batched(b, batch_size, 2, f"biases[{i}]") for i, b in enumerate(biases))
    return TTTState(
        ws, bs, tuple(torch.zeros_like(w) for w in ws), tuple(torch.zeros_like(b) for b in bs), 0
    )


def _batched(t: Tensor, batch_size: int, unbatched_rank: int, name: str) -> Tensor:
    if t.dim() == unbatched_rank:
        return t.unsqueeze(0).expand(batch_size, *t.shape)
    if t.dim() == unbatched_rank + 1:
        if t.shape[0] == batch_size:
            return t
        if t.shape[0] == 1:
            return t.expand(batch_size, *t.shape[1:])
        raise ValueError(f"{name}: batch dimension {t.shape[0]} != batch size {batch_size}")
    raise ValueError(
        f"{name}: expected rank {unbatched_rank} or {unbatched_rank + 1}, got shape {tuple(t.shape)}"
    )
