"""LaCT with one set of batched matmuls per chunk: the fast form (kernels/README.md section 13).

Per chunk of ``n`` tokens (rows of ``K, V, Q: [n, d]``, learning rates ``L1, L2, L3: [n, 1]``),
with the fast weights stacked as ``W13 = [W1; W3]: [2m, d]`` and ``E = -dl/dA`` per token::

    [H1 | H3] = K W13^T                    A = silu(H1) o H3           (the SwiGLU hidden)
    E   = V W2                             (l = -<A W2^T, V> row by row, so dl/dA = -V W2)
    E3  = E o silu(H1)                     E1 = E o H3 o silu'(H1),  silu' = s + silu (1 - s)
    G1  = -E1^T (L1 o K)                   G3 = -E3^T (L3 o K)         G2 = -(L2 o V)^T A
    O   = (silu(Q W1^T) o (Q W3^T)) W2^T

(``s = sigmoid(H1)``; the minus signs are applied to the small ``m x d`` sums.)

Causal chunks apply the weights they start with (``Q`` and ``K`` share one product with
``W13``), then update; non-causal chunks update, then apply. The backward is autograd's: a
chunk is a handful of large products, so the recorded graph is small (one node per product
or element-wise op per chunk) and holds ``O(n m)`` activations per chunk, like attention's.

Products run in the input dtype (bfloat16 on a GPU under mixed precision), with float32
accumulation inside the matmul; the fast weights, the accumulated gradient, the momentum and
the update stay in float32 (float64 for float64 inputs).

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``m`` hidden width,
``C`` chunk size, ``n <= C`` tokens of one segment.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ttt_video.kernels.common import without_autocast
from ttt_video.kernels.lact.state import LaCTState, Matrices, chunk_segments
from ttt_video.kernels.lact.update import commit


def _stacked(weights: Matrices, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``W13 = [W1; W3]: [B, H, 2m, d]`` and ``W2: [B, H, d, m]`` in the product dtype."""
    w1, w2, w3 = weights
    return torch.cat((w1, w3), dim=-2).to(dtype), w2.to(dtype)


def _swiglu_hidden(h13: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Split ``[H1 | H3]: [..., 2m]`` and return ``H1, H3, sigmoid(H1), silu(H1)``."""
    h1, h3 = h13.chunk(2, dim=-1)
    sig = torch.sigmoid(h1)
    return h1, h3, sig, h1 * sig


def _apply(h13: Tensor, w2: Tensor) -> Tensor:
    """``O = (silu(H1) o H3) W2^T: [B, H, n, d]`` from ``[H1 | H3] = Q W13^T``."""
    _, h3, _, s1 = _swiglu_hidden(h13)
    return (s1 * h3) @ w2.transpose(-2, -1)


def _chunk_grads(h13: Tensor, w2: Tensor, k: Tensor, v: Tensor, lr: Tensor) -> Matrices:
    """``sum_i eta_i grad_W l_i`` over one segment (module docstring), per matrix.

    Args:
        h13: ``[B, H, n, 2m]``, ``K W13^T``.
        w2: ``[B, H, d, m]``.
        k, v: ``[B, H, n, d]``.
        lr: ``[B, H, n, 3]``.

    Returns:
        ``(G1 [B, H, m, d], G2 [B, H, d, m], G3 [B, H, m, d])`` in the product dtype.
    """
    _, h3, sig, s1 = _swiglu_hidden(h13)
    # e = -dA, -dH3, -dH1 (silu'(x) = sig + silu(x) (1 - sig)); the signs go on the m x d sums
    e = v @ w2
    eh3 = e * s1
    eh1 = e * h3 * (sig + s1 * (1 - sig))
    l1, l2, l3 = (t[..., None] for t in lr.unbind(-1))
    g1 = -(eh1.transpose(-2, -1) @ (l1 * k))
    g3 = -(eh3.transpose(-2, -1) @ (l3 * k))
    g2 = -((l2 * v).transpose(-2, -1) @ (s1 * h3))
    return g1, g2, g3


@without_autocast
def lact_chunked(
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
    """LaCT over a stream, one segment of a chunk at a time (arguments as ``lact_naive``).

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
    dtype = q.dtype
    weights, grads, moments, position = state.weights, state.grads, state.momentum, state.position
    sizes = [end - start for start, end in chunk_segments(position, q.shape[1], chunk_size)]
    # one split per input (not a slice per chunk): its backward writes each gradient once
    pieces = [t.transpose(1, 2).split(sizes, dim=2) for t in (q, k, v, lr.to(dtype))]
    outs = []
    for n, qc, kc, vc, lc in zip(sizes, *pieces):
        w13, w2 = _stacked(weights, dtype)
        if causal:  # queries and keys read the same (chunk-start) weights: one product
            hq13, h13 = (torch.cat((qc, kc), dim=-2) @ w13.transpose(-2, -1)).split(n, dim=2)
            outs.append(_apply(hq13, w2))
        else:
            h13 = kc @ w13.transpose(-2, -1)
        chunk = tuple(g.to(grads[0].dtype) for g in _chunk_grads(h13, w2, kc, vc, lc))
        total = chunk if position == 0 else tuple(a + b for a, b in zip(grads, chunk))
        position += n
        full = position == chunk_size
        if causal and full:
            weights, moments = commit(weights, total, moments, momentum, muon)
        elif not causal:
            after, after_moments = commit(weights, total, moments, momentum, muon)
            w13, w2 = _stacked(after, dtype)
            outs.append(_apply(qc @ w13.transpose(-2, -1), w2))
            if full:
                weights, moments = after, after_moments
        if full:
            grads, position = tuple(torch.zeros_like(g) for g in total), 0
        else:
            grads = total
    o = torch.cat(outs, dim=2).transpose(1, 2)
    return o, LaCTState(weights, grads, moments, position)
