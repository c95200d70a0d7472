"""The Triton path of ``ttt_linear`` / ``ttt_mlp``: layout, padding and the autograd wrapper.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``b`` mini-batch size,
``S`` sequences (``B``, or ``len(cu_seqlens) - 1`` for a packed batch), ``p`` the initial
state's position, ``N_s = ceil((p + len_s) / b)`` mini-batches of sequence ``s``, ``NT``
padded tokens of all sequences (``b * sum N_s``), ``L`` inner layers, ``m`` the hidden
width of TTT-MLP.

Every sequence is padded on the left by ``p`` and on the right to a multiple of ``b`` with
``lam = 0`` (kernels/README.md section 3), and all sequences are packed head-major as
``[H, NT, d]`` so that one launch with a program per (sequence, head) covers a packed
variable-length batch. The gather and the output LayerNorm are ordinary autograd ops; only
the state chain is a custom ``autograd.Function``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from ttt_video.kernels.common import LN_EPS, layer_norm, without_autocast
from ttt_video.kernels.state import TTTState
from ttt_video.kernels.triton.linear import linear_bwd_kernel, linear_fwd_kernel
from ttt_video.kernels.triton.mlp import mlp_bwd_kernel, mlp_fwd_kernel

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def check_device(*tensors: Tensor) -> None:
    """Raise ``RuntimeError`` when the kernels cannot run on these tensors."""
    if any(t.device.type != "cuda" for t in tensors) and not isinstance(
        linear_fwd_kernel, InterpretedFunction
    ):
        raise RuntimeError(
            "impl='triton' needs CUDA tensors; on CPU it runs only in the Triton interpreter: "
            "set TRITON_INTERPRET=1 before ttt_video.kernels.triton is first imported"
        )


@dataclass
class _Layout:
    """Where each sequence lives in the padded, packed ``[H, NT, d]`` layout."""

    S: int
    NT: int
    tok: Tensor  # [NT] source row in the flattened [B*T] tokens (0 on padding)
    valid: Tensor  # [NT] bool, False on padding
    cu_blk: Tensor  # [S + 1] int32 first mini-batch of each sequence
    cu_ck: Tensor  # [S + 1] int32 first saved state of each sequence
    commit: Tensor  # [S] fp32 1 when the sequence ends at a mini-batch border


def _layout(lens: list[int], starts: list[int], p: int, b: int, group: int, device) -> _Layout:
    nblk = [math.ceil((p + n) / b) for n in lens]
    cu_blk = [0]
    cu_ck = [0]
    for nb in nblk:
        cu_blk.append(cu_blk[-1] + nb)
        cu_ck.append(cu_ck[-1] + math.ceil(nb / group))
    NT = cu_blk[-1] * b
    seq = torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(nblk) * b)  # [NT]
    off = torch.arange(NT) - torch.tensor(cu_blk[:-1])[seq] * b - p  # token index in sequence
    valid = (off >= 0) & (off < torch.tensor(lens)[seq])
    tok = torch.where(valid, torch.tensor(starts)[seq] + off, 0)
    commit = torch.tensor([float((p + n) % b == 0) for n in lens])

    def i32(x):
        return torch.tensor(x, dtype=torch.int32, device=device)

    return _Layout(
        len(lens),
        NT,
        tok.to(device),
        valid.to(device),
        i32(cu_blk),
        i32(cu_ck),
        commit.to(device),
    )


@without_autocast
def ttt_triton(
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
    save_every: int = 16,
    cu_seqlens: Tensor | None = None,
) -> tuple[Tensor, TTTState]:
    """Dual-form TTT with Triton kernels; the contract of ``dual.ttt_dual`` plus ``cu_seqlens``.

    Args:
        q, k, v: ``[B, T, H, d]`` in fp32, bf16 or fp16 (``B = 1`` with ``cu_seqlens``).
        lam: ``[B, T, H]``; tau: ``[b]``; ln_weight, ln_bias: ``[H, d]``.
        state: batched ``TTTState`` with batch ``S``; every sequence starts from its own row.
        mini_batch_size: ``b`` in 16, 32, 64 (any power of two >= 16).
        save_every: mini-batches between states saved for the backward.
        cu_seqlens: ``[S + 1]`` int offsets of the packed sequences along ``T``.

    Returns:
        ``o: [B, T, H, d]`` (dtype of ``q``) and the final state (batch ``S``, fp32).
    """
    B, T, H, d = q.shape
    b, p, L = mini_batch_size, state.position, state.num_layers
    if q.dtype not in DTYPES:
        raise ValueError(f"q: impl='triton' takes {DTYPES}, got {q.dtype}")
    if b < 16 or b & (b - 1):
        raise ValueError(f"mini_batch_size: impl='triton' needs a power of two >= 16, got {b}")
    check_device(q)
    if cu_seqlens is None:
        lens, starts = [T] * B, [i * T for i in range(B)]
    else:
        cu = [int(x) for x in cu_seqlens.tolist()]
        lens, starts = [e - s for s, e in zip(cu[:-1], cu[1:])], cu[:-1]
    lay = _layout(lens, starts, p, b, save_every, q.device)

    def pack(x: Tensor) -> Tensor:  # [B, T, H, *] -> [H, NT, *], zeros on padding
        x = x.reshape(B * T, *x.shape[2:])[lay.tok]
        x = torch.where(lay.valid.view(-1, *[1] * (x.dim() - 1)), x, 0)
        return x.transpose(0, 1).contiguous()

    f32 = torch.float32
    tau_eff = tau.to(f32) if causal else torch.full((b,), 1.0 / b, dtype=f32, device=q.device)
    flat = [
        t.to(f32).contiguous()
        for t in state.weights + state.biases + state.grad_weights + state.grad_biases
    ]
    meta = (lay, b, save_every, causal, p > 0, L)
    outs = _TritonScan.apply(
        pack(q),
        pack(k),
        pack(v),
        pack(lam.to(f32)),
        tau_eff.contiguous(),
        ln_weight.to(f32).contiguous(),
        ln_bias.to(f32).contiguous(),
        meta,
        *flat,
    )
    zbar = outs[0].transpose(0, 1)[lay.valid].view(B, T, H, d)
    o = q.to(f32) + layer_norm(zbar, ln_weight.to(f32), ln_bias.to(f32))
    fin = list(outs[1:])
    final = TTTState(
        tuple(fin[:L]),
        tuple(fin[L : 2 * L]),
        tuple(fin[2 * L : 3 * L]),
        tuple(fin[3 * L :]),
        (p + lens[-1]) % b,
    )
    return o.to(q.dtype), final


def _launch_args(d: int, b: int, group: int, causal: bool, has_acc: bool) -> dict:
    BD = max(16, triton.next_power_of_2(d))  # tl.dot needs >= 16 in every dimension
    return dict(
        BS=b, BD=BD, GROUP=group, CAUSAL=causal, HAS_ACC=has_acc, num_warps=4 if BD <= 64 else 8
    )


def _hidden_tile(m: int, d: int) -> int:
    """Hidden columns per TTT-MLP tile: a power of two in [16, 64] dividing ``m``."""
    bm = 64 if d <= 64 else 32  # [128, 64] fp32 tiles would spill at d = 128
    while bm >= 16 and m % bm:
        bm //= 2
    if bm < 16:
        raise ValueError(f"W1: impl='triton' needs a hidden width divisible by 16, got {m}")
    return bm


class _TritonScan(torch.autograd.Function):
    """The state chain on packed blocks ``[H, NT, d]``; state tensors ``[S, H, ...]`` fp32."""

    @staticmethod
    def forward(ctx, q, k, v, lam, tau, lnw, lnb, meta, *state):
        lay, b, group, causal, has_acc, L = meta
        H, NT, d = q.shape
        cur = [t.clone() for t in state]  # the kernel turns the initial state into the final one
        zb = torch.empty(H, NT, d, dtype=torch.float32, device=q.device)
        C = int(lay.cu_ck[-1])
        cks = [q.new_empty((C, H, *t.shape[2:]), dtype=torch.float32) for t in state[: 2 * L]]
        kw = _launch_args(d, b, group, causal, has_acc)
        args = (q, k, v, lam, tau, lnw, lnb, *cur, zb, *cks, lay.cu_blk, lay.cu_ck, lay.commit)
        if L == 1:
            linear_fwd_kernel[(lay.S, H)](*args, NT, H, d, LN_EPS, **kw)
        else:
            m = state[0].shape[-1]
            mlp_fwd_kernel[(lay.S, H)](*args, NT, H, d, m, LN_EPS, BM=_hidden_tile(m, d), **kw)
        ctx.save_for_backward(q, k, v, lam, tau, lnw, lnb, *state[2 * L :], *cks)
        ctx.meta = meta
        ctx.has_acc = has_acc or any(ctx.needs_input_grad[8 + 2 * L :])
        return (zb, *cur)

    @staticmethod
    def backward(ctx, dzb, *dfinal):
        lay, b, group, causal, _, L = ctx.meta
        q, k, v, lam, tau, lnw, lnb, *rest = ctx.saved_tensors
        gacc, cks = rest[: 2 * L], rest[2 * L :]
        H, NT, d = q.shape
        S = lay.S
        dstate = [
            torch.zeros((S, H, *t.shape[2:]), dtype=torch.float32, device=q.device)
            if g is None
            else g.to(torch.float32).contiguous().clone()
            for g, t in zip(dfinal, list(cks) + list(gacc))
        ]
        dzb = torch.zeros_like(q, dtype=torch.float32) if dzb is None else dzb.contiguous()
        scratch = [q.new_empty((S, H, group, *t.shape[2:]), dtype=torch.float32) for t in cks]
        dq, dk, dv = (torch.empty_like(q, dtype=torch.float32) for _ in range(3))
        dlam = torch.empty_like(lam)
        dtau = q.new_empty((S, H, b), dtype=torch.float32)
        dlnw, dlnb = (q.new_empty((S, H, d), dtype=torch.float32) for _ in range(2))
        kw = _launch_args(d, b, group, causal, ctx.has_acc)
        head = (q, k, v, lam, tau, lnw, lnb, *gacc, *cks, *scratch)
        tail = (dq, dk, dv, dlam, dtau, dlnw, dlnb, lay.cu_blk, lay.cu_ck, lay.commit, NT, H, d)
        if L == 1:
            linear_bwd_kernel[(S, H)](*head, dzb, *dstate, *tail, LN_EPS, **kw)
        else:
            m = cks[0].shape[-1]
            stash = [q.new_empty((S, H, b, m), dtype=torch.float32) for _ in range(2)]
            mlp_bwd_kernel[(S, H)](
                *head, *stash, dzb, *dstate, *tail, m, LN_EPS, BM=_hidden_tile(m, d), **kw
            )
        return (
            dq.to(q.dtype),
            dk.to(q.dtype),
            dv.to(q.dtype),
            dlam,
            dtau.sum((0, 1)) if causal else None,
            dlnw.sum(0),
            dlnb.sum(0),
            None,
            *dstate,
        )
