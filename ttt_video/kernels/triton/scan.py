"""The Triton path of ``ttt_linear`` / ``ttt_mlp``: layout, padding and the kernel launches.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``b`` mini-batch size,
``S`` sequences (``B``, or ``len(cu_seqlens) - 1`` for a packed batch), ``p`` the initial
state's position, ``N_s = ceil((p + len_s) / b)`` mini-batches of sequence ``s``, ``NT``
padded tokens of all sequences (``b * sum N_s``), ``L`` inner layers, ``m`` the hidden
width of TTT-MLP.

Every sequence is padded on the left by ``p`` and on the right to a multiple of ``b`` with
``lam = 0`` (kernels/README.md section 3), and all sequences are packed head-major as
``[H, NT, d]`` so that one launch with a program per (sequence, head) covers a packed
variable-length batch. The gather and the output LayerNorm are ordinary autograd ops; only
the state chain is a custom op (``torch.ops.ttt_video.triton_scan``, registered with its
fake implementation and its backward op in kernels/ops.py; ``launch_scan`` and
``launch_scan_backward`` here are their bodies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from ttt_video.kernels.api import gpu_capability, triton_unsupported
from ttt_video.kernels.common import LN_EPS, layer_norm, without_autocast
from ttt_video.kernels.ops import triton_scan
from ttt_video.kernels.state import TTTState
from ttt_video.kernels.triton.linear import linear_bwd_kernel, linear_fwd_kernel
from ttt_video.kernels.triton.mlp import mlp_bwd_kernel, mlp_fwd_kernel


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
    checkpoints: int  # C = cu_ck[-1], states saved by the forward


def _layout(lens: list[int], starts: list[int], p: int, b: int, group: int, device) -> _Layout:
    nblk = [math.ceil((p + n) / b) for n in lens]
    cu_blk = [0]
    cu_ck = [0]
    for nb in nblk:
        cu_blk.append(cu_blk[-1] + nb)
        cu_ck.append(cu_ck[-1] + math.ceil(nb / group))
    NT = cu_blk[-1] * b
    # output_size: a static shape, so that torch.compile / torch.export trace through
    seq = torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(nblk) * b, output_size=NT)
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
        cu_ck[-1],
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
        mini_batch_size: ``b`` in 16, 32, 64.
        save_every: mini-batches between states saved for the backward.
        cu_seqlens: ``[S + 1]`` int offsets of the packed sequences along ``T``.

    Returns:
        ``o: [B, T, H, d]`` (dtype of ``q``) and the final state (batch ``S``, fp32).
    """
    B, T, H, d = q.shape
    b, p, L = mini_batch_size, state.position, state.num_layers
    check_device(q)
    m = state.weights[0].shape[-1] if L == 2 else None
    unsupported = triton_unsupported(q.dtype, d, b, m, gpu_capability(q))
    if unsupported:
        raise ValueError(f"impl='triton': {unsupported}")
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
    outs = triton_scan(
        pack(q),
        pack(k),
        pack(v),
        pack(lam.to(f32)),
        tau_eff.contiguous(),
        ln_weight.to(f32).contiguous(),
        ln_bias.to(f32).contiguous(),
        lay.cu_blk,
        lay.cu_ck,
        lay.commit,
        flat,
        b,
        save_every,
        causal,
        p > 0,
        lay.checkpoints,
    )
    zbar = outs[0].transpose(0, 1)[lay.valid].view(B, T, H, d)
    o = q.to(f32) + layer_norm(zbar, ln_weight.to(f32), ln_bias.to(f32))
    fin = outs[1 : 1 + 4 * L]
    final = TTTState(
        tuple(fin[:L]),
        tuple(fin[L : 2 * L]),
        tuple(fin[2 * L : 3 * L]),
        tuple(fin[3 * L :]),
        (p + lens[-1]) % b,
    )
    return o.to(q.dtype), final


def _launch_args(d: int, b: int, group: int, has_acc: bool) -> dict:
    """Compile-time arguments and launch options of the chain kernels."""
    BD = max(16, triton.next_power_of_2(d))  # tl.dot needs >= 16 in every dimension
    # num_stages=1: no software pipelining of the mini-batch loads. The chain is sequential
    # and each mini-batch's blocks are used at once; pipelining them multiplied the shared
    # memory (3 stages: 132 KB for TTT-Linear fp32 at d = 64, b = 64, vs 48 KB).
    # maxnreg=255: without a cap, ptxas (12.9, -O3) gives the backward kernels 32 registers
    # and a 19 KB stack per thread; capped, it uses 255 and spills 5 KB (bf16, d = b = 64).
    return dict(
        BS=b,
        BD=BD,
        GROUP=group,
        HAS_ACC=has_acc,
        num_warps=4 if BD <= 64 else 8,
        num_stages=1,
        maxnreg=255,
    )


def hidden_tile(m: int, widest: int) -> int:
    """Hidden columns per TTT-MLP tile: the largest power of two <= ``widest`` dividing ``m``
    (``m`` is a multiple of 16, ``triton_unsupported``)."""
    bm = widest
    while m % bm:
        bm //= 2
    return bm


def contraction_chunk(BD: int, dtype: torch.dtype) -> int:
    """``KC``: head-dim columns per chunk of the products that read both operands from global
    memory (``common.dot_from_memory``: the TTT-Linear backward's products with a ``[d, d]``
    operand, the TTT-MLP kernels' products with a ``[b, d]`` block). 64 for fp32 at
    ``BD = 128``, where a whole ``[64, 128] x [128, 128]`` product stages 96 KB, nearly the
    99 KB of consumer GPUs alone; otherwise the whole block."""
    return 64 if dtype == torch.float32 and BD > 64 else BD


def chain_hidden_tile(m: int, d: int, dtype: torch.dtype) -> int:
    """``BM`` of the forward and backward kernels: the widest tile whose backward fits in 99 KB
    of shared memory (consumer GPUs; benchmarks/kernels_gpu.md): 64 for 16-bit inputs up to
    d = 64, 16 at d = 128 and in fp32 (its operands are twice the size)."""
    return hidden_tile(m, 64 if dtype != torch.float32 and d <= 64 else 16)


def launch_scan(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    tau: Tensor,
    lnw: Tensor,
    lnb: Tensor,
    cu_blk: Tensor,
    cu_ck: Tensor,
    commit: Tensor,
    state: list[Tensor],
    mini_batch_size: int,
    group: int,
    causal: bool,
    has_acc: bool,
    checkpoints: int,
) -> list[Tensor]:
    """The state chain on packed blocks: the body of the custom op
    ``torch.ops.ttt_video.triton_scan`` (kernels/ops.py, with its fake and its backward).

    Args:
        q, k, v: ``[H, NT, d]`` (input dtype); lam: ``[H, NT]``; tau: ``[b]``; lnw, lnb:
            ``[H, d]`` (fp32); cu_blk, cu_ck: ``[S + 1]`` int32; commit: ``[S]`` fp32.
        state: the initial weights, biases, accumulated gradients of weights and biases,
            ``[S, H, ...]`` fp32 each (``4 L`` tensors).
        checkpoints: ``C = cu_ck[-1]``, saved states.

    Returns:
        ``[zb: [H, NT, d], *final state, *saved weights and biases [C, H, ...]]`` (fp32).
    """
    L = len(state) // 4
    H, NT, d = q.shape
    cur = [t.clone() for t in state]  # the kernel turns the initial state into the final one
    zb = torch.empty(H, NT, d, dtype=torch.float32, device=q.device)
    cks = [q.new_empty((checkpoints, H, *t.shape[2:]), dtype=torch.float32) for t in state[: 2 * L]]
    kw = _launch_args(d, mini_batch_size, group, has_acc)
    args = (q, k, v, lam, tau, lnw, lnb, *cur, zb, *cks, cu_blk, cu_ck, commit)
    grid = (commit.shape[0], H)
    if L == 1:
        linear_fwd_kernel[grid](*args, NT, H, d, LN_EPS, int(causal), **kw)
    else:
        m = state[0].shape[-1]
        BM = chain_hidden_tile(m, d, q.dtype)
        KC = contraction_chunk(kw["BD"], q.dtype)
        mlp_fwd_kernel[grid](*args, NT, H, d, m, LN_EPS, int(causal), BM=BM, KC=KC, **kw)
    return [zb, *cur, *cks]


def launch_scan_backward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    tau: Tensor,
    lnw: Tensor,
    lnb: Tensor,
    cu_blk: Tensor,
    cu_ck: Tensor,
    commit: Tensor,
    gacc: list[Tensor],
    checkpoints: list[Tensor],
    dzb: Tensor,
    dfinal: list[Tensor],
    mini_batch_size: int,
    group: int,
    causal: bool,
    has_acc: bool,
) -> list[Tensor]:
    """The backward of ``launch_scan``, the body of ``torch.ops.ttt_video.triton_scan_backward``:
    ``[dq, dk, dv, dlam, dtau [S, H, b], dlnw, dlnb [S, H, d] (per program), *adjoint of the
    initial state]`` given ``dzb: [H, NT, d]`` and the adjoint of the final state ``dfinal``
    (fp32). ``commit`` holds 0 or 1 (``_layout``): the TTT-MLP backward reads the adjoint
    ``dP`` of a tile's update from ``dW`` or from ``dgW`` by it."""
    L = len(gacc) // 2
    H, NT, d = q.shape
    S, b = commit.shape[0], mini_batch_size
    dstate = [g.clone() for g in dfinal]  # the kernel turns it into the initial state's
    f32 = torch.float32
    # TTT-Linear's start weights are read by products only: kept in the input dtype
    scratch = [
        q.new_empty((S, H, group, *t.shape[2:]), dtype=q.dtype if L == 1 and i == 0 else f32)
        for i, t in enumerate(checkpoints)
    ]
    dq, dk, dv = (torch.empty_like(q, dtype=f32) for _ in range(3))
    dlam = torch.empty_like(lam)
    dtau = q.new_empty((S, H, b), dtype=f32)
    dlnw, dlnb = (q.new_empty((S, H, d), dtype=f32) for _ in range(2))
    kw = _launch_args(d, b, group, has_acc)
    KC = contraction_chunk(kw["BD"], q.dtype)
    if L == 1:  # the accumulated gradient again, in the input dtype, for the products
        gacc = [*gacc, gacc[0].to(q.dtype)]
    head = (q, k, v, lam, tau, lnw, lnb, *gacc, *checkpoints, *scratch)
    tail = (dq, dk, dv, dlam, dtau, dlnw, dlnb, cu_blk, cu_ck, commit, NT, H, d)
    if L == 1:
        linear_bwd_kernel[(S, H)](*head, dzb, *dstate, *tail, LN_EPS, int(causal), KC=KC, **kw)
    else:
        m = checkpoints[0].shape[-1]
        stash = [q.new_empty((S, H, b, m), dtype=f32) for _ in range(2)]
        BM = chain_hidden_tile(m, d, q.dtype)
        mlp_bwd_kernel[(S, H)](
            *head, *stash, dzb, *dstate, *tail, m, LN_EPS, int(causal), BM=BM, KC=KC, **kw
        )
    return [dq, dk, dv, dlam, dtau, dlnw, dlnb, *dstate]
