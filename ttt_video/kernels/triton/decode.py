"""One-token decode with Triton: the primal form, updating the state in place.

Letters: ``B`` batch, ``H`` heads, ``D`` head dim (``BD`` its power-of-two block, columns
``>= D`` masked), ``M`` the hidden width of TTT-MLP (``BM`` columns of it per tile), ``b``
mini-batch size, ``p`` the state's position. One program per (stream, head); a single
token has no matrix product worth a ``tl.dot``, so products are broadcast-and-reduce.

Per token (kernels/README.md section 5): the gradient ``G`` at the mini-batch start
weights is added to ``gW += lam k^T G``, the query is answered with ``W - tau_p gW``, and
at ``p = b - 1`` that is committed: ``W <- W - tau_{b-1} gW``, ``gW <- 0``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ttt_video.kernels.api import triton_unsupported
from ttt_video.kernels.common import LN_EPS, autograd_records, without_autocast
from ttt_video.kernels.state import TTTState
from ttt_video.kernels.triton.common import gelu, inner_grad
from ttt_video.kernels.triton.scan import check_device, hidden_tile, ttt_triton


@triton.jit
def _layer_norm_out(q, z, lnw, lnb, cm, D, eps):
    """``q + LN(z)`` for one row ``[1, BD]`` (fp32)."""
    mu = tl.sum(z, 1) / D
    zc = tl.where(cm[None, :], z - mu[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(zc * zc, 1) / D + eps)
    return q + zc * rstd[:, None] * lnw[None, :] + lnb[None, :]


@triton.jit
def _load_token(
    q_ptr, k_ptr, v_ptr, lam_ptr, tau_ptr, lnw_ptr, lnb_ptr, bh, h, p, D, BD: tl.constexpr
):
    """The token's rows ``[1, BD]`` (fp32), its learning rate and the head's constants."""
    rd = tl.arange(0, BD)
    cm = rd < D
    off = bh * D + rd[None, :]
    q = tl.load(q_ptr + off, mask=cm[None, :], other=0.0).to(tl.float32)
    k = tl.load(k_ptr + off, mask=cm[None, :], other=0.0).to(tl.float32)
    v = tl.load(v_ptr + off, mask=cm[None, :], other=0.0).to(tl.float32)
    lam = tl.load(lam_ptr + bh)
    tau_p = tl.load(tau_ptr + p)
    lnw = tl.load(lnw_ptr + h * D + rd, mask=cm, other=0.0)
    lnb = tl.load(lnb_ptr + h * D + rd, mask=cm, other=0.0)
    return rd, cm, q, k, v, lam, tau_p, lnw, lnb


# p and commit change every token: one compiled kernel serves all positions
@triton.jit(do_not_specialize=["p", "commit"])
def linear_decode_kernel(
    q_ptr,  # [B, H, D] input dtype
    k_ptr,
    v_ptr,
    lam_ptr,  # [B, H] fp32
    tau_ptr,  # [b] fp32
    lnw_ptr,  # [H, D] fp32
    lnb_ptr,
    w_ptr,  # [B, H, D, D] fp32, updated in place
    c_ptr,  # [B, H, D]
    gw_ptr,  # [B, H, D, D]
    gc_ptr,  # [B, H, D]
    o_ptr,  # [B, H, D] out, input dtype
    p,
    commit,  # 1 at the last position of the mini-batch
    H,
    D,
    eps,
    BD: tl.constexpr,
):
    bh = tl.program_id(0)
    h = bh % H
    rd, cm, q, k, v, lam, tau_p, lnw, lnb = _load_token(
        q_ptr, k_ptr, v_ptr, lam_ptr, tau_ptr, lnw_ptr, lnb_ptr, bh, h, p, D, BD
    )
    wm = cm[:, None] & cm[None, :]
    woff = bh * D * D + rd[:, None] * D + rd[None, :]
    W = tl.load(w_ptr + woff, mask=wm, other=0.0)  # [BD, BD]
    c = tl.load(c_ptr + bh * D + rd, mask=cm, other=0.0)
    z = tl.sum(tl.trans(k) * W, 0)[None, :] + c[None, :]  # [1, BD] = k W + c
    G = inner_grad(z, v - k, lnw, lnb, cm, D, eps)[3]  # [1, BD]
    gW = tl.load(gw_ptr + woff, mask=wm, other=0.0) + lam * tl.trans(k) * G  # k^T G
    gc = tl.load(gc_ptr + bh * D + rd, mask=cm, other=0.0) + lam * tl.sum(G, 0)
    Wi = W - tau_p * gW  # the weights this token's query sees
    ci = c - tau_p * gc
    zq = tl.sum(tl.trans(q) * Wi, 0)[None, :] + ci[None, :]
    o = _layer_norm_out(q, zq, lnw, lnb, cm, D, eps)
    tl.store(o_ptr + bh * D + rd[None, :], o, mask=cm[None, :])
    keep = commit == 0
    tl.debug_barrier()  # every thread has read the state before any overwrites it
    tl.store(w_ptr + woff, Wi, mask=wm & (commit != 0))
    tl.store(c_ptr + bh * D + rd, ci, mask=cm & (commit != 0))
    tl.store(gw_ptr + woff, tl.where(keep, gW, 0.0), mask=wm)
    tl.store(gc_ptr + bh * D + rd, tl.where(keep, gc, 0.0), mask=cm)


@triton.jit(do_not_specialize=["p", "commit"])
def mlp_decode_kernel(
    q_ptr,  # [B, H, D] input dtype
    k_ptr,
    v_ptr,
    lam_ptr,  # [B, H] fp32
    tau_ptr,  # [b] fp32
    lnw_ptr,  # [H, D] fp32
    lnb_ptr,
    w1_ptr,  # [B, H, D, M] fp32, updated in place
    w2_ptr,  # [B, H, M, D]
    c1_ptr,  # [B, H, M]
    c2_ptr,  # [B, H, D]
    gw1_ptr,
    gw2_ptr,
    gc1_ptr,
    gc2_ptr,
    o_ptr,  # [B, H, D] out, input dtype
    p,
    commit,
    H,
    D,
    M,
    eps,
    BD: tl.constexpr,
    BM: tl.constexpr,
):
    bh = tl.program_id(0)
    h = bh % H
    rd, cm, q, k, v, lam, tau_p, lnw, lnb = _load_token(
        q_ptr, k_ptr, v_ptr, lam_ptr, tau_ptr, lnw_ptr, lnb_ptr, bh, h, p, D, BD
    )
    rm = tl.arange(0, BM)
    w1 = w1_ptr + bh * D * M
    w2 = w2_ptr + bh * M * D
    # pass 1 over hidden tiles: Z2 = gelu(k W1 + c1) W2 + c2
    z2 = tl.load(c2_ptr + bh * D + rd, mask=cm, other=0.0)[None, :]  # [1, BD]
    for m0 in range(0, M, BM):
        off1 = rd[:, None] * M + (m0 + rm)[None, :]  # [BD, BM] into W1
        off2 = (m0 + rm)[:, None] * D + rd[None, :]  # [BM, BD] into W2
        c1 = tl.load(c1_ptr + bh * M + m0 + rm)
        z1 = tl.sum(tl.trans(k) * tl.load(w1 + off1, mask=cm[:, None], other=0.0), 0) + c1
        x2 = gelu(z1)[0]  # [BM]
        z2 += tl.sum(x2[:, None] * tl.load(w2 + off2, mask=cm[None, :], other=0.0), 0)[None, :]
    G2 = inner_grad(z2, v - k, lnw, lnb, cm, D, eps)[3]  # [1, BD]
    gc2 = tl.load(gc2_ptr + bh * D + rd, mask=cm, other=0.0) + lam * tl.sum(G2, 0)
    c2i = tl.load(c2_ptr + bh * D + rd, mask=cm, other=0.0) - tau_p * gc2
    zq2 = c2i[None, :]
    keep = commit == 0
    # pass 2: G1, the accumulated gradients, and the query through the updated weights
    for m0 in range(0, M, BM):
        off1 = rd[:, None] * M + (m0 + rm)[None, :]
        off2 = (m0 + rm)[:, None] * D + rd[None, :]
        W1 = tl.load(w1 + off1, mask=cm[:, None], other=0.0)  # [BD, BM]
        W2 = tl.load(w2 + off2, mask=cm[None, :], other=0.0)  # [BM, BD]
        c1 = tl.load(c1_ptr + bh * M + m0 + rm)
        z1 = tl.sum(tl.trans(k) * W1, 0) + c1
        x2, d1 = gelu(z1)[:2]
        G1 = tl.sum(G2 * W2, 1) * d1  # [BM] = (G2 W2^T) o gelu'(Z1)
        gW1 = tl.load(gw1_ptr + bh * D * M + off1, mask=cm[:, None], other=0.0)
        gW1 += lam * tl.trans(k) * G1[None, :]
        gW2 = tl.load(gw2_ptr + bh * M * D + off2, mask=cm[None, :], other=0.0)
        gW2 += lam * x2[:, None] * G2
        gc1 = tl.load(gc1_ptr + bh * M + m0 + rm) + lam * G1
        W1i = W1 - tau_p * gW1
        W2i = W2 - tau_p * gW2
        c1i = c1 - tau_p * gc1
        xq2 = gelu(tl.sum(tl.trans(q) * W1i, 0) + c1i)[0]
        zq2 += tl.sum(xq2[:, None] * W2i, 0)[None, :]
        tl.debug_barrier()  # every thread has read this tile (in both passes) before any store
        tl.store(w1 + off1, W1i, mask=cm[:, None] & (commit != 0))
        tl.store(w2 + off2, W2i, mask=cm[None, :] & (commit != 0))
        tl.store(c1_ptr + bh * M + m0 + rm, c1i, mask=(rm >= 0) & (commit != 0))
        tl.store(gw1_ptr + bh * D * M + off1, tl.where(keep, gW1, 0.0), mask=cm[:, None])
        tl.store(gw2_ptr + bh * M * D + off2, tl.where(keep, gW2, 0.0), mask=cm[None, :])
        tl.store(gc1_ptr + bh * M + m0 + rm, tl.where(keep, gc1, 0.0))
    o = _layer_norm_out(q, zq2, lnw, lnb, cm, D, eps)
    tl.store(o_ptr + bh * D + rd[None, :], o, mask=cm[None, :])
    tl.store(c2_ptr + bh * D + rd, c2i, mask=cm & (commit != 0))
    tl.store(gc2_ptr + bh * D + rd, tl.where(keep, gc2, 0.0), mask=cm)


def decode_step_(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    tau: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    state: TTTState,
    mini_batch_size: int,
) -> tuple[Tensor, TTTState]:
    """Consume one token per stream, updating ``state``'s tensors in place (no autograd).

    Args:
        q, k, v: ``[B, 1, H, d]``; lam: ``[B, 1, H]``; tau: ``[b]``; ln_*: ``[H, d]``.
        state: fp32 contiguous state at position ``p < b`` (``TTTState`` is frozen, so the
            new position comes back in a new ``TTTState`` over the same tensors).

    Returns:
        ``o: [B, 1, H, d]`` and the state at position ``(p + 1) % b``.
    """
    B, _, H, d = q.shape
    tensors = state.weights + state.biases + state.grad_weights + state.grad_biases
    if any(t.dtype != torch.float32 or not t.is_contiguous() for t in tensors):
        raise ValueError("state: the in-place decode needs fp32 contiguous state tensors")
    f32 = torch.float32
    p = state.position
    o = torch.empty_like(q)
    args = (
        q.contiguous(),
        k.contiguous(),
        v.contiguous(),
        lam.to(f32).contiguous(),
        tau.to(f32).contiguous(),
        ln_weight.to(f32).contiguous(),
        ln_bias.to(f32).contiguous(),
    )
    BD = triton.next_power_of_2(d)
    commit = int(p == mini_batch_size - 1)
    warps = 4 if BD <= 64 else 8
    if state.num_layers == 1:
        linear_decode_kernel[(B * H,)](
            *args, *tensors, o, p, commit, H, d, LN_EPS, BD=BD, num_warps=warps
        )
    else:
        m = state.weights[0].shape[-1]
        # 8 elements of each [BD, BM] tile a thread: about 128 registers, no spills
        BM = hidden_tile(m, max(16, 256 * warps // BD))
        mlp_decode_kernel[(B * H,)](
            *args, *tensors, o, p, commit, H, d, m, LN_EPS, BD=BD, BM=BM, num_warps=warps
        )
    return o, TTTState(
        state.weights,
        state.biases,
        state.grad_weights,
        state.grad_biases,
        (p + 1) % mini_batch_size,
    )


@without_autocast
def ttt_decode_triton(q, k, v, lam, tau, ln_weight, ln_bias, state, mini_batch_size):
    """``ttt_decode`` with Triton: the given state is copied (fp32) and left unmodified.

    Shapes as ``decode_step_``; for a loop that owns its state, call ``decode_step_``
    directly and save the copy. When a gradient is needed (rollout training, one token per
    call) the token goes through ``ttt_triton``, whose kernels have a backward: the same
    step (kernels/README.md section 3, split streams), on a mini-batch padded around it.
    """
    tensors = (q, k, v, lam, tau, ln_weight, ln_bias, *state.weights, *state.biases)
    tensors += (*state.grad_weights, *state.grad_biases)
    if autograd_records(tensors):
        return ttt_triton(q, k, v, lam, tau, ln_weight, ln_bias, state, mini_batch_size)
    check_device(q)
    unsupported = triton_unsupported(
        q.dtype, q.shape[-1], None, state.weights[0].shape[-1] if state.num_layers == 2 else None
    )
    if unsupported:
        raise ValueError(f"impl='triton': {unsupported}")
    L = state.num_layers
    flat = [*state.weights, *state.biases, *state.grad_weights, *state.grad_biases]
    o, *new = torch.ops.ttt_video.triton_decode.default(
        q, k, v, lam, tau, ln_weight, ln_bias, flat, state.position, mini_batch_size
    )  # registered in kernels/ops.py
    parts = (new[:L], new[L : 2 * L], new[2 * L : 3 * L], new[3 * L :])
    return o, TTTState(*map(tuple, parts), (state.position + 1) % mini_batch_size)
