"""The primal form, token by token: the ground truth every faster form is tested against.

Written to read like the paper (kernels/README.md sections 2, 3 and 7): for every token take
the gradient of the inner loss at the weights the mini-batch started with (by
``torch.func.grad``, so the closed form used elsewhere is checked independently), accumulate it
weighted by the token's learning rate, and answer the query with the weights of that position.
With ``keep_inner_norm`` each commit rescales every inner layer's ``(W, b)`` back to the
norm it had before the commit (section 15), written out here and differentiated by autograd.
It never mutates its inputs and computes in at least float32. Slow by design.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``b`` mini-batch size,
``i`` position inside the mini-batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.func import grad

from ttt_video.kernels.common import LN_EPS, rescale_to_norm, without_autocast
from ttt_video.kernels.state import TTTState


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """LayerNorm over the last dim written out, so ``torch.func.grad`` differentiates this
    formula and not the fused kernel the closed-form gradient of the other forms uses."""
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + LN_EPS) * weight + bias


def gelu_tanh(x: Tensor) -> Tensor:
    """tanh-approximated GELU written out, for the same reason as ``layer_norm`` above."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def inner_model(weights: list[Tensor], biases: list[Tensor], x: Tensor) -> Tensor:
    """``g(x)``: linear layers with gelu_tanh between them. ``x: [B, H, d] -> [B, H, d]``."""
    for n, (w, b) in enumerate(zip(weights, biases)):
        if n > 0:
            x = gelu_tanh(x)
        x = torch.einsum("bhi,bhij->bhj", x, w) + b
    return x


def _inner_loss(params, k, v, ln_weight, ln_bias):
    """Sum over (B, H) of ``1/2 ||LN(g(k)) - (v - k)||^2``; each (b, h) owns its params."""
    weights, biases = params
    z = inner_model(weights, biases, k)
    return 0.5 * (layer_norm(z, ln_weight, ln_bias) - (v - k)).pow(2).sum()


@without_autocast
def ttt_naive(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    tau: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    state: TTTState,
    mini_batch_size: int,
    causal: bool = True,
    keep_inner_norm: bool = False,
) -> tuple[Tensor, TTTState]:
    """Primal-form TTT over a stream.

    Args:
        q, k, v: ``[B, T, H, d]``.
        lam: ``[B, T, H]`` per-token learning rates.
        tau: ``[b]`` position weights (causal only; the non-causal form uses ``1/b``).
        ln_weight, ln_bias: ``[H, d]``.
        state: batched ``TTTState`` to start from.
        mini_batch_size: ``b``.
        causal: False = the non-causal video variant (every query of a mini-batch sees the
            update of the whole mini-batch).
        keep_inner_norm: after each commit, scale every inner layer's ``(W, b)`` jointly back
            to its norm before the commit, per stream and head.

    Returns:
        ``o: [B, T, H, d]`` (dtype of ``q``) and the final ``TTTState``.
    """
    in_dtype, dt = q.dtype, torch.promote_types(q.dtype, torch.float32)
    q, k, v, lam, tau = (x.to(dt) for x in (q, k, v, lam, tau))
    lnw, lnb = ln_weight.to(dt), ln_bias.to(dt)
    b, T = mini_batch_size, q.shape[1]
    ws = [w.to(dt) for w in state.weights]
    bs = [c.to(dt) for c in state.biases]
    acc_w = [g.to(dt) for g in state.grad_weights]
    acc_b = [g.to(dt) for g in state.grad_biases]
    pos, t, outs = state.position, 0, []
    grad_fn = grad(_inner_loss)
    while t < T:
        r = min(b - pos, T - t)
        chunk_outs = []
        for j in range(t, t + r):
            gw, gb = grad_fn((ws, bs), k[:, j], v[:, j], lnw, lnb)
            lr = lam[:, j, :, None]  # [B, H, 1]
            acc_w = [a + lr[..., None] * g for a, g in zip(acc_w, gw)]
            acc_b = [a + lr * g for a, g in zip(acc_b, gb)]
            if causal:
                chunk_outs.append(
                    _answer(q[:, j], ws, bs, acc_w, acc_b, tau[pos + j - t], lnw, lnb)
                )
        if not causal:
            chunk_outs = [
                _answer(q[:, j], ws, bs, acc_w, acc_b, 1.0 / b, lnw, lnb) for j in range(t, t + r)
            ]
        outs.extend(chunk_outs)
        pos, t = pos + r, t + r
        if pos == b:
            step = tau[b - 1] if causal else 1.0 / b
            new_ws = [w - step * a for w, a in zip(ws, acc_w)]
            new_bs = [c - step * a for c, a in zip(bs, acc_b)]
            if keep_inner_norm:
                kept = [rescale_to_norm(*pair) for pair in zip(ws, bs, new_ws, new_bs)]
                new_ws, new_bs = [w for w, _, _ in kept], [c for _, c, _ in kept]
            ws, bs = new_ws, new_bs
            acc_w = [torch.zeros_like(a) for a in acc_w]
            acc_b = [torch.zeros_like(a) for a in acc_b]
            pos = 0
    o = torch.stack(outs, dim=1).to(in_dtype)
    final = TTTState(tuple(ws), tuple(bs), tuple(acc_w), tuple(acc_b), pos)
    return o, final


def _answer(q_t, ws, bs, acc_w, acc_b, step, lnw, lnb) -> Tensor:
    """``o = q + LN(g_{W0 - step * Gacc}(q))`` for one token ``q_t: [B, H, d]``."""
    w_i = [w - step * a for w, a in zip(ws, acc_w)]
    b_i = [c - step * a for c, a in zip(bs, acc_b)]
    return q_t + layer_norm(inner_model(w_i, b_i, q_t), lnw, lnb)
