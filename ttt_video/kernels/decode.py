"""One-token decode step: the primal form with the closed-form inner gradient.

Letters: ``B`` batch, ``H`` heads, ``d`` head dim, ``b`` mini-batch size, ``L`` inner layers.
The step reads the state, never mutates it, and returns a new one: the weights stay at the
mini-batch start while ``Gacc`` grows, and at the last position of the mini-batch
``W0 <- W0 - tau_{b-1} Gacc`` is committed (kernels/README.md sections 3 and 5), then, with
``keep_inner_norm``, scaled back to the norm of ``W0`` per inner layer (section 15).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ttt_video.kernels.common import (
    gelu_tanh,
    gelu_tanh_vjp,
    layer_norm,
    ln_l2_grad,
    rescale_to_norm,
    without_autocast,
)
from ttt_video.kernels.state import TTTState


def _forward(ws, bs, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Inner model on ``x: [B, H, 1, d]``: inputs ``X_l`` and pre-activations ``Z_l`` per layer."""
    X, Z = [x], []
    for l, (w, c) in enumerate(zip(ws, bs)):
        Z.append(X[l] @ w + c.unsqueeze(-2))
        if l < len(ws) - 1:
            X.append(gelu_tanh(Z[l]))
    return X, Z


@without_autocast
def ttt_decode_torch(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    tau: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    state: TTTState,
    mini_batch_size: int,
    keep_inner_norm: bool = False,
) -> tuple[Tensor, TTTState]:
    """Consume one token per stream.

    Args:
        q, k, v: ``[B, 1, H, d]``; lam: ``[B, 1, H]``; tau: ``[b]``; ln_*: ``[H, d]``.
        state: batched state at position ``p < b``.
        keep_inner_norm: at a commit, scale every inner layer's ``(W, b)`` jointly back to
            its norm before the commit, per stream and head.

    Returns:
        ``o: [B, 1, H, d]`` and the state at position ``(p + 1) % b``.
    """
    dt = torch.promote_types(q.dtype, torch.float32)
    qt, kt, vt = (x.to(dt).transpose(1, 2) for x in (q, k, v))  # [B, H, 1, d]
    lr = lam.to(dt).transpose(1, 2)[..., None]  # [B, H, 1, 1]
    lnw, lnb = ln_weight.to(dt)[:, None], ln_bias.to(dt)[:, None]  # [H, 1, d]
    ws = [w.to(dt) for w in state.weights]
    bs = [c.to(dt) for c in state.biases]
    X, Z = _forward(ws, bs, kt)
    G = [None] * len(ws)
    G[-1] = ln_l2_grad(Z[-1], vt - kt, lnw, lnb)
    for l in reversed(range(len(ws) - 1)):
        G[l] = gelu_tanh_vjp(G[l + 1] @ ws[l + 1].transpose(-1, -2), Z[l])
    acc_w = [a.to(dt) + lr * (x.transpose(-1, -2) @ g) for a, x, g in zip(state.grad_weights, X, G)]
    acc_b = [a.to(dt) + lr[..., 0] * g[..., 0, :] for a, g in zip(state.grad_biases, G)]
    step = tau.to(dt)[state.position]
    w_i = [w - step * a for w, a in zip(ws, acc_w)]
    b_i = [c - step * a for c, a in zip(bs, acc_b)]
    _, Zq = _forward(w_i, b_i, qt)
    o = (qt + layer_norm(Zq[-1], lnw, lnb)).transpose(1, 2)
    pos = state.position + 1
    if pos == mini_batch_size:
        if keep_inner_norm:
            kept = [rescale_to_norm(*pair) for pair in zip(ws, bs, w_i, b_i)]
            w_i, b_i = [w for w, _, _ in kept], [c for _, c, _ in kept]
        new = TTTState(
            tuple(w_i),
            tuple(b_i),
            tuple(torch.zeros_like(a) for a in acc_w),
            tuple(torch.zeros_like(a) for a in acc_b),
            0,
        )
    else:
        new = TTTState(tuple(ws), tuple(bs), tuple(acc_w), tuple(acc_b), pos)
    return o.to(q.dtype), new
