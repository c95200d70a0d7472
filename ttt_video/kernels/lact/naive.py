"""LaCT token by token: the reference every faster form is tested against.

Written to read like the rule (kernels/README.md section 13): for every token take the gradient
of its inner loss ``-<f(k), v>`` at the weights the chunk started with, by
``torch.func.grad`` (so the hand-derived gradients of ``chunked.py`` are checked
independently), add it weighted by the token's learning rates, and at the end of the chunk
apply ``update.commit``. Causal: each query reads the weights its chunk started with (apply,
then update). Non-causal: each query reads the weights after its whole chunk (update, then
apply). Computes in at least float32; slow by design.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``m`` hidden width,
``C`` chunk size.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import grad

from ttt_video.kernels.common import without_autocast
from ttt_video.kernels.lact.state import LaCTState, Matrices, state_dtype
from ttt_video.kernels.lact.update import commit


def swiglu(weights: Matrices, x: Tensor) -> Tensor:
    """``f(x) = W2 (silu(W1 x) * (W3 x))`` per (stream, head), silu written out so that
    ``torch.func.grad`` differentiates this formula. ``x: [B, H, d] -> [B, H, d]``."""
    w1, w2, w3 = weights
    h1 = torch.einsum("bhmd,bhd->bhm", w1, x)
    h3 = torch.einsum("bhmd,bhd->bhm", w3, x)
    return torch.einsum("bhdm,bhm->bhd", w2, h1 * torch.sigmoid(h1) * h3)


def _token_loss(weights: Matrices, k: Tensor, v: Tensor) -> Tensor:
    """Sum over (B, H) of ``-<f(k), v>``; each (b, h) owns its weights, so the gradient of the
    sum is every stream's and head's own gradient."""
    return -(swiglu(weights, k) * v).sum()


@without_autocast
def lact_naive(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    state: LaCTState,
    chunk_size: int,
    causal: bool = True,
    momentum: float = 0.0,
    muon: bool = False,
) -> tuple[Tensor, LaCTState]:
    """LaCT over a stream, one token at a time.

    Args:
        q, k, v: ``[B, T, H, d]``.
        lr: ``[B, T, H, 3]`` per-token learning rates of ``W1, W2, W3``.
        state: the ``LaCTState`` to start from (non-causal: at a chunk border).
        chunk_size: ``C``.
        causal: apply-then-update (True) or update-then-apply (False).
        momentum: coefficient ``beta`` of the momentum on the chunk gradient (0: off).
        muon: orthogonalise the step by Newton-Schulz.

    Returns:
        ``o: [B, T, H, d]`` (dtype of ``q``) and the final ``LaCTState``.
    """
    out_dtype, dtype = q.dtype, state_dtype(q.dtype)
    q, k, v, lr = (t.to(dtype) for t in (q, k, v, lr))
    weights = tuple(w.to(dtype) for w in state.weights)
    grads = tuple(g.to(dtype) for g in state.grads)
    moments = None if state.momentum is None else tuple(m.to(dtype) for m in state.momentum)
    position, T = state.position, q.shape[1]
    token_grad = grad(_token_loss)

    def add_token(grads: Matrices, t: int) -> Matrices:
        g = token_grad(weights, k[:, t], v[:, t])
        return tuple(acc + lr[:, t, :, j, None, None] * g[j] for j, acc in enumerate(grads))

    outs: list[Tensor] = []
    if causal:
        for t in range(T):
            outs.append(swiglu(weights, q[:, t]))
            grads = add_token(grads, t)
            position += 1
            if position == chunk_size:
                weights, moments = commit(weights, grads, moments, momentum, muon)
                grads, position = tuple(torch.zeros_like(g) for g in grads), 0
    else:
        for start in range(0, T, chunk_size):
            end = min(T, start + chunk_size)
            for t in range(start, end):
                grads = add_token(grads, t)
            after, after_moments = commit(weights, grads, moments, momentum, muon)
            outs.extend(swiglu(after, q[:, t]) for t in range(start, end))
            position = end - start
            if position == chunk_size:
                weights, moments = after, after_moments
                grads, position = tuple(torch.zeros_like(g) for g in grads), 0
    return torch.stack(outs, dim=1).to(out_dtype), LaCTState(weights, grads, moments, position)
