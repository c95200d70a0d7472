"""The mini-batch dual form in PyTorch, with an explicit backward: the CPU path.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``b`` mini-batch size,
``N`` mini-batches, ``R = B*H`` independent streams, ``L`` inner layers (1: TTT-Linear,
2: TTT-MLP), ``d_l`` input width of inner layer ``l``.

One inner layer ``l`` of mini-batch ``n`` (kernels/README.md section 3; ``X_0 = K``, ``Xb_0 = Q``)::

    Z_l   = X_l W_l + c_l                      X_{l+1} = gelu(Z_l)
    G_L-1 = dl/dZ_L-1 (closed form)            G_l = (G_{l+1} W_{l+1}^T) * gelu'(Z_l)
    Zb_l  = Xb_l W_l + c_l - (M o Xb_l X_l^T) G_l - M G_l - tau o (Xb_l gW_l + gc_l)
    Xb_{l+1} = gelu(Zb_l)                      output: Zb_{L-1}
    P_l   = gW_l + X_l^T (lam o G_l)           commit: W_l <- W_l - tau_{b-1} P_l

with ``M[i, j] = mask[i, j] tau_i lam_j`` (``mask`` lower-triangular when causal) and
``(gW, gc)`` the gradient accumulated before the mini-batch (non-zero only for the first
mini-batch of a stream that starts mid-mini-batch). With ``keep_inner_norm`` each committed
pair ``(W_l, c_l)`` is then scaled back to the norm it had before the commit (section 15). The
stream is padded on the left by the state's position and on the right to ``N*b`` tokens with
zero learning rate, so padded tokens change nothing. Everything that does not depend on the
state (``Q K^T``, ``M``, the targets, the output LayerNorm) is computed for all mini-batches
at once; only the chain of states is walked one mini-batch at a time. The backward walks that
chain in reverse, recomputing each group of ``save_every`` mini-batches from a state saved by
the forward. The derivation is in ``kernels/README.md``.

The chain, ``scan_forward`` and ``scan_backward``, is the custom op ``ttt_video::dual_scan``
with its backward op (registered in ``kernels/ops.py``) while ``torch.compile`` or
``torch.export`` trace, so that they see it as one node, and the autograd.Function
``_DualScan`` in eager mode (the same functions, without the dispatcher's overhead);
``ttt_dual`` around it (padding, layout, output LayerNorm) is ordinary autograd. A chain
of one mini-batch (``INLINE_CHAIN_MAX_MINIBATCHES``) skips the op under ``torch.compile``:
``scan_forward`` is traced into the caller's graph. Inside a compiled model the op runs the
chain compiled by inductor too (``run_chain``): whole when short, in segments of that
length when long (``_scan_forward_in_segments``, ``_scan_backward_in_segments``), or one
mini-batch step at a time in a backward whose checkpoints are further apart than that
(``_step`` and ``_step_backward`` read a ``_MiniBatch`` and return what they compute); how
short is "short" depends on whether the call trains (``whole_chain_max``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_leaves, tree_unflatten

from ttt_video.kernels.common import (
    autograd_records,
    gelu_tanh,
    gelu_tanh_grad2,
    gelu_tanh_vjp,
    layer_norm,
    ln_backward,
    ln_stats,
    pair_sq_norm,
    rescale_to_norm,
    without_autocast,
)
from ttt_video.kernels.state import TTTState


@without_autocast
def ttt_dual(
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
    keep_inner_norm: bool = False,
) -> tuple[Tensor, TTTState]:
    """Dual-form TTT over a stream; same contract as ``naive.ttt_naive``.

    Args:
        q, k, v: ``[B, T, H, d]``.
        lam: ``[B, T, H]``.
        tau: ``[b]`` (ignored when ``causal`` is False: the non-causal form uses ``1/b``).
        ln_weight, ln_bias: ``[H, d]``.
        state: batched ``TTTState`` (``position`` must be 0 when not causal).
        mini_batch_size: ``b``.
        save_every: the forward keeps the state every this many mini-batches for the
            backward (memory ``~ N / save_every`` states; the backward recomputes the rest).
        keep_inner_norm: after each commit, scale every inner layer's ``(W, c)`` jointly back
            to its norm before the commit, per stream and head.

    Returns:
        ``o: [B, T, H, d]`` (dtype of ``q``) and the final ``TTTState``.
    """
    B, T, H, d = q.shape
    b, p, L = mini_batch_size, state.position, state.num_layers
    dt = torch.promote_types(q.dtype, torch.float32)
    N = math.ceil((p + T) / b)
    pad = (p, N * b - p - T)

    def blocks(x: Tensor) -> Tensor:  # [B, T, H, d] -> [R, N, b, d], contiguous
        x = F.pad(x.to(dt).transpose(1, 2), (0, 0, *pad))
        return x.reshape(B * H, N, b, x.shape[-1])

    qb, kb = blocks(q), blocks(k)
    tgt = blocks(v - k)
    lamb = F.pad(lam.to(dt).transpose(1, 2), pad).reshape(B * H, N, b)
    tau_eff = tau.to(dt) if causal else torch.full((b,), 1.0 / b, dtype=dt, device=q.device)
    lnw = ln_weight.to(dt).expand(B, H, d).reshape(B * H, 1, d)
    lnb = ln_bias.to(dt).expand(B, H, d).reshape(B * H, 1, d)
    commit_last = (p + T) % b == 0
    flat = [
        t.to(dt).reshape(B * H, *t.shape[2:])
        for t in state.weights + state.biases + state.grad_weights + state.grad_biases
    ]
    # the flag, not is_exporting(): torch 2.11's dynamo folds that call to True under
    # torch.compile too, so the chain never ran compiled there
    exporting = torch.compiler._is_exporting_flag
    trains = autograd_records((qb, kb, tgt, lamb, tau_eff, lnw, lnb, *flat))
    if torch.compiler.is_compiling() and not exporting and N <= INLINE_CHAIN_MAX_MINIBATCHES:
        # traced into the caller's graph, differentiated by AOT autograd (see the limit);
        # dense outputs, as the op's: a state of expanded zeros would compile a second graph
        outs = _dense(scan_forward(
            qb, kb, tgt, lamb, tau_eff, lnw, lnb, flat, causal, commit_last, save_every,
            keep_inner_norm,
        ))  # fmt: skip
    elif torch.compiler.is_compiling():  # one node for torch.compile and torch.export
        graph = 0 if exporting else whole_chain_max(trains)
        outs = torch.ops.ttt_video.dual_scan.default(
            qb, kb, tgt, lamb, tau_eff, lnw, lnb, flat, causal, commit_last, save_every,
            keep_inner_norm, graph,
        )  # fmt: skip
    else:  # the same computation without the dispatcher's overhead
        outs = _DualScan.apply(
            qb, kb, tgt, lamb, tau_eff, lnw, lnb, causal, commit_last, save_every,
            keep_inner_norm, trains, *flat,
        )  # fmt: skip
    zbar = outs[0].reshape(B, H, N * b, d)[:, :, p : p + T].transpose(1, 2)
    o = q.to(dt) + layer_norm(zbar, ln_weight.to(dt), ln_bias.to(dt))
    fin = [t.reshape(B, H, *t.shape[1:]) for t in outs[1 : 1 + 4 * L]]
    final = TTTState(
        tuple(fin[:L]),
        tuple(fin[L : 2 * L]),
        tuple(fin[2 * L : 3 * L]),
        tuple(fin[3 * L :]),
        (p + T) % b,
    )
    return o.to(q.dtype), final


def _masked_lr(lam: Tensor, tau: Tensor, causal: bool) -> Tensor:
    """``M[r, n, i, j] = mask[i, j] * tau_i * lam[r, n, j]``: ``[R, N, b, b]``."""
    m = tau[:, None] * lam[..., None, :]
    return m.tril() if causal else m


@dataclass
class _Chain:
    """What the state chain reads, for all mini-batches: blocks ``[R, N, b, *]``.

    ``AM0 = M o (Q K^T + 1)`` is the ``(A_0 + M)`` factor of the first inner layer and
    ``gy0 = lnw o (lnb - tgt)`` the state-independent part of ``dl/dxh``: both are
    computed once for every mini-batch. The commit is scaled by ``neg_t = -tau_{b-1}``, a
    0-dim tensor rather than a Python float, so that no mini-batch waits for the device to
    read it (and a tracer sees no data-dependent value), and ``lam_t = neg_t lam``.
    ``keep_norm``: each commit scales every layer's ``(W, c)`` back to its norm before it.
    """

    q: Tensor
    k: Tensor
    tgt: Tensor
    lam: Tensor
    tau: Tensor
    lnw: Tensor
    lnb: Tensor
    M: Tensor
    S0: Tensor
    AM0: Tensor
    gy0: Tensor
    lnw2: Tensor
    neg_t: Tensor
    lam_t: Tensor
    commit_last: bool
    keep_norm: bool

    @classmethod
    def build(
        cls, q, k, tgt, lam, tau, lnw, lnb, causal: bool, commit_last: bool, keep_norm: bool
    ) -> _Chain:
        M = _masked_lr(lam, tau, causal)
        S0 = q @ k.transpose(-1, -2)
        AM0, gy0 = M * (S0 + 1.0), lnw.unsqueeze(1) * (lnb.unsqueeze(1) - tgt)
        neg_t = -tau[-1]
        return cls(
            q, k, tgt, lam, tau, lnw, lnb, M, S0, AM0, gy0, lnw * lnw, neg_t, lam * neg_t,
            commit_last, keep_norm,
        )  # fmt: skip

    @property
    def num_minibatches(self) -> int:
        return self.q.shape[1]

    def at(self, n: int) -> _MiniBatch:
        """Mini-batch ``n``: its slices (views) and what every mini-batch shares."""
        return _MiniBatch(
            self.q[:, n], self.k[:, n], self.tgt[:, n], self.lam[:, n], self.M[:, n],
            self.AM0[:, n], self.gy0[:, n], self.lam_t[:, n], self.tau, self.lnw, self.lnb,
            self.lnw2, self.neg_t,
            commit=n < self.num_minibatches - 1 or self.commit_last, first=n == 0,
            keep_norm=self.keep_norm,
        )  # fmt: skip


class _MiniBatch(NamedTuple):
    """What one mini-batch's forward and backward read: ``[R, b, *]`` slices of the chain's
    blocks, the shared ``tau: [b]``, ``lnw, lnb, lnw2: [R, 1, d]``, ``neg_t`` (0-dim), and
    its flags: whether it commits its update, whether it is the first (the only one that
    reads an accumulated gradient), whether commits keep the norm."""

    q: Tensor
    k: Tensor
    tgt: Tensor
    lam: Tensor
    M: Tensor
    AM0: Tensor
    gy0: Tensor
    lam_t: Tensor
    tau: Tensor
    lnw: Tensor
    lnb: Tensor
    lnw2: Tensor
    neg_t: Tensor
    commit: bool
    first: bool
    keep_norm: bool


def num_checkpoints(num_minibatches, save_every: int):
    """``C``: states the forward keeps for the backward, at mini-batches ``0, e, 2e, ...``
    (``e = save_every``; the first is the initial state). Integer or ``SymInt``."""
    return (num_minibatches + save_every - 1) // save_every


def scan_forward(
    q: Tensor,
    k: Tensor,
    tgt: Tensor,
    lam: Tensor,
    tau: Tensor,
    lnw: Tensor,
    lnb: Tensor,
    state: list[Tensor],
    causal: bool,
    commit_last: bool,
    save_every: int,
    keep_norm: bool = False,
    caches: list | None = None,
) -> list[Tensor]:
    """The state chain of the dual form, forward (callers turn autocast off: ``ttt_dual``,
    the custom op).

    Args:
        q, k, tgt: padded blocks ``[R, N, b, d]``; lam: ``[R, N, b]``; tau: ``[b]``;
            lnw, lnb: ``[R, 1, d]``.
        state: the initial weights, biases, accumulated gradients of weights and biases,
            ``[R, ...]`` each (``4 L`` tensors).
        causal, commit_last: the mask, and whether the last mini-batch commits its update.
        save_every: ``e``: the backward restarts from the state every ``e`` mini-batches.
        keep_norm: each commit scales every layer's ``(W, c)`` back to its norm before it
            (``keep_inner_norm``).
        caches: a list that receives each mini-batch's intermediates (``_Cache``), which
            ``scan_backward`` can take instead of running the forward again (None: kept
            nowhere).

    Returns:
        ``[zbar: [R, N, b, d], *final state (4 L, [R, ...]), *checkpoints (2 L)]``: the
        pre-LN outputs, the state after the last mini-batch, and the weights and biases at
        mini-batches ``e, 2e, ...`` stacked ``[C - 1, R, ...]`` (their accumulated
        gradients are zero: a mini-batch border follows a commit). No output is an input;
        the zero accumulated gradient of a committed final state is an expanded scalar.
    """
    L = len(state) // 4
    chain = _Chain.build(q, k, tgt, lam, tau, lnw, lnb, causal, commit_last, keep_norm)
    N = chain.num_minibatches
    cur = _unflatten(state, L)
    zbar = q.new_empty(q.shape)
    saved = [t.new_empty((num_checkpoints(N, save_every) - 1, *t.shape)) for t in state[: 2 * L]]
    for n in range(N):
        if n and n % save_every == 0:
            for buf, t in zip(saved, _flatten(cur)):
                buf[n // save_every - 1] = t
        zbar[:, n], cur, cache = _step(chain.at(n), cur)
        if caches is not None:
            caches.append(cache)
    # copy what a chain that never committed passed through, and what the kept intermediates
    # hold (so that the caller may edit the final state in place)
    held = [*state, *tree_leaves(caches[-1] if caches else None)]
    final = [t.clone() if any(t is h for h in held) else t for t in _flatten(cur)]
    return [zbar, *final, *saved]


@without_autocast
def scan_backward(
    q: Tensor,
    k: Tensor,
    tgt: Tensor,
    lam: Tensor,
    tau: Tensor,
    lnw: Tensor,
    lnb: Tensor,
    state: list[Tensor],
    checkpoints: list[Tensor],
    dzbar: Tensor,
    dfinal: list[Tensor],
    causal: bool,
    commit_last: bool,
    save_every: int,
    keep_norm: bool = False,
    compiled_steps: bool = False,
    caches: list | None = None,
) -> list[Tensor]:
    """The state chain of the dual form, backward.

    Args:
        q ... lnb, state, causal, commit_last, save_every, keep_norm: the inputs of
            ``scan_forward``.
        checkpoints: its saved weights and biases (``2 L`` tensors ``[C - 1, R, ...]``).
        dzbar: ``[R, N, b, d]`` the adjoint of ``zbar``; dfinal: of the final state.
        compiled_steps: run each mini-batch's steps compiled by inductor (``run_chain``).
        caches: every mini-batch's intermediates from ``scan_forward`` (a chain of at most
            ``save_every`` mini-batches): the walk reads them instead of running the
            forward again.

    Returns:
        ``[dq, dk, dtgt, dlam, dtau, dlnw, dlnb, *adjoint of the initial state]``, shaped as
        those inputs (``dtau`` is meaningful only when ``causal``).
    """
    L = len(state) // 4
    chain = _Chain.build(q, k, tgt, lam, tau, lnw, lnb, causal, commit_last, keep_norm)
    N, every = chain.num_minibatches, save_every
    starts = [_unflatten(state, L)] + [
        (
            [ck[g] for ck in checkpoints[:L]],
            [ck[g] for ck in checkpoints[L:]],
            [_zeros_like(t) for t in state[2 * L : 3 * L]],
            [_zeros_like(t) for t in state[3 * L :]],
        )
        for g in range(num_checkpoints(N, every) - 1)
    ]
    # owned, dense copies: the walk accumulates the weight adjoints in place
    dstate = _unflatten([g.clone(memory_format=torch.contiguous_format) for g in dfinal], L)
    grads = _Grads(q, lam, lnw)
    if caches is not None and N > every:
        raise ValueError(f"caches: given for {N} mini-batches, more than save_every={every}")
    for g0 in reversed(range(0, N, every)):
        if caches is None:
            cur, group = starts[g0 // every], []
            for n in range(g0, min(g0 + every, N)):
                _, cur, cache = _call(_step, compiled_steps, chain.at(n), cur)
                group.append(cache)
        else:
            group = caches
        for n in reversed(range(g0, min(g0 + every, N))):
            args = (chain.at(n), group[n - g0], dzbar[:, n], dstate)
            dstate, mb_grads = _call(_step_backward, compiled_steps, *args)
            grads.add(n, mb_grads)
    dM = grads.dM + grads.dA0 * (chain.S0 + 1.0)
    dS0 = grads.dA0 * chain.M
    grads.dq += dS0 @ k
    grads.dk += dS0.transpose(-1, -2) @ q
    if causal:
        dM = dM.tril()
    dlam = grads.dlam + (dM * tau[:, None]).sum(-2)
    dtau = grads.dtau + (dM * lam[..., None, :]).sum((0, 1, 3)) if causal else grads.dtau
    return [grads.dq, grads.dk, grads.dtgt, dlam, dtau, grads.dlnw, grads.dlnb, *_flatten(dstate)]


_SAVED = object()
"""Marks where a tensor of the kept intermediates went to ``save_for_backward``."""


def setup_context(ctx, inputs: tuple, output: list[Tensor], caches: list | None = None) -> None:
    """Keep what ``scan_backward`` needs: the inputs of ``scan_forward``, its checkpoints and,
    from ``_DualScan``, the intermediates of every mini-batch (``caches``, or None).

    The ``setup_context`` of the custom op ``ttt_video::dual_scan`` and of ``_DualScan``;
    ``inputs`` are the op's arguments in order.
    """
    q, k, tgt, lam, tau, lnw, lnb, state, causal, commit_last, save_every, keep_norm, *rest = inputs
    L = len(state) // 4
    leaves, ctx.caches_spec = tree_flatten(caches)
    # the tensors go through save_for_backward (saved-tensor hooks, e.g. checkpointing, see
    # them); the other leaves (None) stay here, the tensors' places marked by _SAVED
    ctx.cache_leaves = [_SAVED if isinstance(t, Tensor) else t for t in leaves]
    cached = [t for t in leaves if isinstance(t, Tensor)]
    ctx.save_for_backward(q, k, tgt, lam, tau, lnw, lnb, *state, *output[1 + 4 * L :], *cached)
    ctx.args = (L, causal, commit_last, save_every, keep_norm)
    ctx.num_checkpoints = len(output) - 1 - 4 * L
    ctx.graph_minibatches = rest[0] if rest else 0  # the op's ``graph_minibatches``


def backward_args(ctx, grads) -> tuple:
    """The arguments of ``scan_backward`` from what ``setup_context`` kept and the adjoints of
    the forward's outputs (``grads``, None for an output autograd left out: zeros), and the
    kept intermediates (None: none were kept)."""
    L, C = ctx.args[0], ctx.num_checkpoints
    q, k, tgt, lam, tau, lnw, lnb, *rest = ctx.saved_tensors
    state, checkpoints, cached = rest[: 4 * L], rest[4 * L : 4 * L + C], iter(rest[4 * L + C :])
    dzbar = _or_zeros(grads[0], q)
    dfinal = [_or_zeros(g, t) for g, t in zip(grads[1 : 1 + 4 * L], state)]
    leaves = [next(cached) if t is _SAVED else t for t in ctx.cache_leaves]
    args = (q, k, tgt, lam, tau, lnw, lnb, state, checkpoints, dzbar, dfinal, *ctx.args[1:])
    return args, tree_unflatten(leaves, ctx.caches_spec)


def input_grads(ctx, out: list[Tensor]) -> tuple:
    """``scan_backward``'s result as the gradients of ``q, k, tgt, lam, tau, lnw, lnb`` and
    the list of those of the state (``tau``'s: None when not causal)."""
    dq, dk, dtgt, dlam, dtau, dlnw, dlnb, *dstate = out
    causal = ctx.args[1]
    return dq, dk, dtgt, dlam, dtau if causal else None, dlnw, dlnb, dstate


def _or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    return like.new_zeros(like.shape) if grad is None else grad


# How long a chain inductor compiles as one graph, the loop over mini-batches unrolled; a
# longer one runs as segments of at most that length, one graph per segment length and the
# loop over segments in Python, so that compile time does not grow with the length. A call
# without a gradient (a video rollout's one-frame calls, a prompt of any length): at most 4
# mini-batches. A training call, whose shapes come back every step: at most 16. One graph
# for the quickstart's 10-frame context makes its compiled step 1.12x faster for TTT-Linear
# and 1.27x for TTT-MLP, for 36 s and 2 minutes more of compiling on a slow CPU, once per
# shape: inductor's cache keeps the graphs on disk (benchmarks/call_overhead.md).
WHOLE_CHAIN_MAX_MINIBATCHES = 4
WHOLE_CHAIN_MAX_MINIBATCHES_TRAINING = 16

# A chain this short skips the op under torch.compile (not torch.export): its few products
# are traced into the caller's graph, and AOT autograd derives their backward. For a video
# rollout's one-frame calls that saves the op's dispatch and two nested compiled calls
# (dynamo's guards each): 8-9% of the quickstart's compiled TTT-Linear step. A longer chain
# keeps the op: with the quickstart's 10-mini-batch context traced too, AOT autograd's
# backward of the unrolled chain made the step 1.35x slower (benchmarks/call_overhead.md).
INLINE_CHAIN_MAX_MINIBATCHES = 1

_compiled_fns: dict = {}
_fns_that_failed: set = set()


def whole_chain_max(trains: bool) -> int:
    """The longest chain compiled as one graph (above): for a call with a gradient when
    ``trains``."""
    return WHOLE_CHAIN_MAX_MINIBATCHES_TRAINING if trains else WHOLE_CHAIN_MAX_MINIBATCHES


def run_chain(fn, graph_minibatches: int, *args) -> list[Tensor]:
    """``fn(*args)`` (``scan_forward`` or ``scan_backward``): eager when ``graph_minibatches``
    is 0, else compiled by inductor, as one graph when the chain has at most
    ``graph_minibatches`` mini-batches, else in segments of at most that many, one graph per
    segment length (``_segment_length``; a mini-batch step at a time in a backward that no
    segment length fits). Fusing the chain's many small ops makes a one-mini-batch call of
    TTT-Linear 1.5x (forward) to 2.8x (backward) cheaper on a CPU
    (benchmarks/call_overhead.md), and a graph per segment instead of per mini-batch makes
    the video model's training step on a 100- or 400-frame clip 1.5x cheaper
    (benchmarks/video_clip_length.md)."""
    if not graph_minibatches:
        return fn(*args)
    N, save_every = args[0].shape[1], args[-2]  # both end with save_every, keep_norm
    if N <= graph_minibatches:
        return _call(fn, True, *args)
    segment = _segment_length(graph_minibatches, save_every, fn is scan_backward)
    if not segment:
        return scan_backward(*args, compiled_steps=True)
    in_segments = _scan_backward_in_segments if fn is scan_backward else _scan_forward_in_segments
    return in_segments(segment, *args)


def _segment_length(graph_minibatches: int, save_every: int, backward: bool) -> int:
    """Mini-batches per compiled segment of a long chain, at most ``graph_minibatches``: a
    multiple of ``save_every``, so that each segment of the backward starts from a state the
    forward kept, and every state the forward keeps is a segment's start or inside one; the
    forward may also use a divisor of ``save_every``. 0: none fits (a backward with
    ``save_every > graph_minibatches``)."""
    if graph_minibatches >= save_every:
        return graph_minibatches // save_every * save_every
    if backward:
        return 0
    return max(s for s in range(1, graph_minibatches + 1) if save_every % s == 0)


def _scan_forward_in_segments(
    segment, q, k, tgt, lam, tau, lnw, lnb, state, causal, commit_last, save_every, keep_norm
) -> list[Tensor]:
    """``scan_forward`` as consecutive compiled calls of ``segment`` mini-batches (the last
    may be shorter), each from the state the one before ended with; the same outputs. Each
    call gets contiguous copies, so that every full segment hits the same graph."""
    N, L = q.shape[1], len(state) // 4
    zbars, saved, cur = [], [[] for _ in range(2 * L)], state
    for s in range(0, N, segment):
        end = min(s + segment, N)
        if s and s % save_every == 0:  # the state at a kept mini-batch that starts a segment
            for buf, t in zip(saved, cur[: 2 * L]):
                buf.append(t.unsqueeze(0))
        part, flags = _segment((q, k, tgt, lam), s, end, causal, commit_last, save_every, keep_norm)
        out = _call(scan_forward, True, *part, tau, lnw, lnb, _dense(cur), *flags)
        zbars.append(out[0])
        cur = out[1 : 1 + 4 * L]
        for buf, kept in zip(saved, out[1 + 4 * L :]):
            buf.append(kept)
    saved = [torch.cat(buf) if buf else t.new_empty((0, *t.shape)) for buf, t in zip(saved, state)]
    return [torch.cat(zbars, 1), *cur, *saved]


def _scan_backward_in_segments(
    segment, q, k, tgt, lam, tau, lnw, lnb, state, checkpoints, dzbar, dfinal,
    causal, commit_last, save_every, keep_norm,
) -> list[Tensor]:  # fmt: skip
    """``scan_backward`` as compiled calls of ``segment`` mini-batches (a multiple of
    ``save_every``), last segment first: each starts from the state the forward kept at its
    first mini-batch (its accumulated gradient is zero there: a commit precedes it) and
    passes the adjoint of that state to the segment before it; the same outputs."""
    N, L = q.shape[1], len(state) // 4
    dstate, pieces = list(dfinal), []
    dtau = dlnw = dlnb = None
    for s in reversed(range(0, N, segment)):
        end, first = min(s + segment, N), s // save_every
        if s == 0:
            start = state
        else:
            kept = [ck[first - 1] for ck in checkpoints]
            start = [*kept, *(torch.zeros_like(t) for t in state[2 * L :])]
        inner = [ck[first : first + num_checkpoints(end - s, save_every) - 1] for ck in checkpoints]
        (*part, dz), flags = _segment(
            (q, k, tgt, lam, dzbar), s, end, causal, commit_last, save_every, keep_norm
        )
        args = (*part, tau, lnw, lnb, _dense(start), _dense(inner), dz, _dense(dstate), *flags)
        dq, dk, dtgt, dlam, dt, dw, db, *dstate = _call(scan_backward, True, *args)
        pieces.append((dq, dk, dtgt, dlam))
        dtau, dlnw, dlnb = (dt, dw, db) if dtau is None else (dtau + dt, dlnw + dw, dlnb + db)
    dq, dk, dtgt, dlam = (torch.cat(p[::-1], 1) for p in zip(*pieces))
    return [dq, dk, dtgt, dlam, dtau, dlnw, dlnb, *dstate]


def _segment(blocks, s: int, end: int, causal, commit_last, save_every, keep_norm) -> tuple:
    """Mini-batches ``[s, end)`` of a chain: contiguous slices of ``blocks`` (``[R, N, ...]``
    each) and the segment's flags (it commits its last mini-batch unless it ends the chain)."""
    N = blocks[0].shape[1]
    flags = (causal, commit_last or end < N, save_every, keep_norm)
    return _dense([x[:, s:end] for x in blocks]), flags


def _dense(tensors: list[Tensor]) -> list[Tensor]:
    """Contiguous tensors (an expanded zero becomes a real one): the same strides at every
    segment, so one compiled graph serves them all."""
    return [t.contiguous() for t in tensors]


def _call(fn, compiled: bool, *args):
    """``fn(*args)``, by ``torch.compile(fn, dynamic=False)`` when ``compiled`` (one graph per
    shape and flags). Where inductor cannot compile (no C++ compiler, ...), the eager
    function runs, after one warning."""
    if compiled and fn not in _fns_that_failed:
        if fn not in _compiled_fns:
            _compiled_fns[fn] = torch.compile(fn, dynamic=False)
        try:
            return _compiled_fns[fn](*args)
        except Exception as e:  # the eager call below raises a real error again
            _fns_that_failed.add(fn)
            message = f"dual form: {fn.__name__} runs uncompiled ({type(e).__name__}: {e})"
            warnings.warn(message, stacklevel=2)
    return fn(*args)


class _DualScan(torch.autograd.Function):
    """``scan_forward`` and ``scan_backward`` in eager mode: the custom op
    ``ttt_video::dual_scan`` computes the same with the same ``setup_context``, but a call
    through the dispatcher costs tens of microseconds of Python (PyTorch issue 176592),
    7-12% of a one-mini-batch call on a CPU (a video rollout step).

    With ``keep``, a chain of at most ``save_every`` mini-batches (one group of the
    backward's walk: a video model's one-frame rollout calls, a context of up to 16 frames)
    keeps every mini-batch's intermediates for the backward instead of running its forward
    again there: about a quarter less work in the chain, for memory that every such call of
    every layer holds from its forward to the backward (``benchmarks/call_overhead.md``;
    gradient checkpointing's hooks drop them). A longer chain keeps only its states, as the
    op does.
    """

    @staticmethod
    def forward(
        ctx, q, k, tgt, lam, tau, lnw, lnb, causal, commit_last, save_every, keep_norm, keep,
        *state,
    ):  # fmt: skip
        inputs = (
            q, k, tgt, lam, tau, lnw, lnb, list(state), causal, commit_last, save_every, keep_norm
        )  # fmt: skip
        caches = [] if keep and q.shape[1] <= save_every else None
        out = scan_forward(*inputs, caches=caches)
        setup_context(ctx, inputs, out, caches)
        ctx.mark_non_differentiable(*out[1 + len(state) :])
        ctx.set_materialize_grads(False)
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        if torch.is_grad_enabled():
            raise NotImplementedError(
                "the dual form's backward cannot be differentiated (create_graph=True): it "
                "accumulates in place and reads the forward's intermediates as constants; "
                'impl="naive" can'
            )
        args, caches = backward_args(ctx, grads)
        *inputs, dstate = input_grads(ctx, scan_backward(*args, caches=caches))
        return (*inputs, None, None, None, None, None, *dstate)


class _Grads:
    """Buffers for the gradients of the non-state inputs, filled one mini-batch at a time."""

    def __init__(self, q: Tensor, lam: Tensor, lnw: Tensor):
        R, N, b, _ = q.shape
        self.dq, self.dk, self.dtgt = (torch.zeros_like(q) for _ in range(3))
        self.dlam = torch.zeros_like(lam)
        self.dM = q.new_zeros(R, N, b, b)  # from inner layers l > 0
        self.dA0 = q.new_zeros(R, N, b, b)  # adjoint of A_0, finished after the walk
        self.dtau = q.new_zeros(b)
        self.dlnw, self.dlnb = torch.zeros_like(lnw), torch.zeros_like(lnw)

    def add(self, n: int, g: _MiniBatchGrads) -> None:
        """Write mini-batch ``n``'s slices and add its terms."""
        for buf, part in ((self.dq, g.dq), (self.dk, g.dk), (self.dtgt, g.dtgt)):
            buf[:, n] = part
        self.dlam[:, n], self.dA0[:, n] = g.dlam, g.dA0
        if g.dM is not None:
            self.dM[:, n] = g.dM
        self.dtau += g.dtau
        self.dlnw += g.dlnw
        self.dlnb += g.dlnb


def _flatten(st: tuple) -> list[Tensor]:
    W, c, gW, gc = st
    return [*W, *c, *gW, *gc]


def _unflatten(flat, L: int) -> tuple:
    flat = list(flat)
    return (flat[:L], flat[L : 2 * L], flat[2 * L : 3 * L], flat[3 * L :])


class _Cache(NamedTuple):
    """Intermediates of one mini-batch kept for its backward (lists are per inner layer)."""

    cur: tuple  # the state the mini-batch started from
    X: list  # inputs of the inner layers on K                 [R, b, d_l]
    Z: list  # their pre-activations                            [R, b, d_{l+1}]
    xh: Tensor  # normalised Z_{L-1}                            [R, b, d]
    mu: Tensor  # its mean                                      [R, b, 1]
    rstd: Tensor  # its 1 / sqrt(var + eps)                      [R, b, 1]
    gy: Tensor  # dl/dxh                                         [R, b, d]
    G: list  # dl/dZ_l                                          [R, b, d_{l+1}]
    Xb: list  # inputs of the inner layers on Q (dual chain)    [R, b, d_l]
    Zb: list  # their outputs                                   [R, b, d_{l+1}]
    S: list  # Xb_l X_l^T for l > 0 (None for l = 0)            [R, b, b]
    AM: list  # A_l + M                                          [R, b, b]
    kept: list | None  # keep_norm commits: (W', c', r) per layer, r: [R]


def _step(mb: _MiniBatch, cur: tuple):
    """Forward of one mini-batch: returns ``(Zb_{L-1}: [R, b, d], next state, cache)``."""
    W, c, gW, gc = cur
    L, kept = len(W), None
    q, k, lam, M = mb.q, mb.k, mb.lam, mb.M
    X, Z = [k], []
    for l in range(L):
        Z.append(_mm_add(c[l].unsqueeze(1), X[l], W[l]))
        if l < L - 1:
            X.append(gelu_tanh(Z[l]))
    xh, mu, rstd = ln_stats(Z[-1])
    gy = torch.addcmul(mb.gy0, mb.lnw2, xh)  # lnw o (lnw o xh + lnb - tgt)
    G = [None] * L
    G[-1] = ln_backward(gy, Z[-1], mu, rstd)
    for l in reversed(range(L - 1)):
        G[l] = gelu_tanh_vjp(G[l + 1] @ W[l + 1].transpose(-1, -2), Z[l])
    Xb, Zb, S, AM = [q], [], [None], [mb.AM0]
    for l in range(L):
        if l > 0:
            Xb.append(gelu_tanh(Zb[l - 1]))
            S.append(Xb[l] @ X[l].transpose(-1, -2))
            AM.append(M * (S[l] + 1.0))
        zb = _mm_add(_mm_add(c[l].unsqueeze(1), Xb[l], W[l]), AM[l], G[l], alpha=-1.0)
        if mb.first:  # the gradient accumulated before this call (zero at a mini-batch border)
            zb = zb - mb.tau[:, None] * _mm_add(gc[l].unsqueeze(1), Xb[l], gW[l])
        Zb.append(zb)
    if mb.commit:  # W <- W - t (gW + X^T (lam o G)), c <- c - t (gc + sum_j lam_j G_j)
        s, tG = mb.neg_t, [mb.lam_t[..., None] * g for g in G]  # -t lam o G
        W_, c_ = [], []
        for l in range(L):
            W_.append(_mm_add(W[l], X[l].transpose(-1, -2), tG[l]))
            c_.append(c[l] + tG[l].sum(1))
            if mb.first:
                W_[l], c_[l] = torch.addcmul(W_[l], gW[l], s), torch.addcmul(c_[l], gc[l], s)
        if mb.keep_norm:  # back to the norm of (W, c): (W', c') = r (W_, c_)
            kept = [rescale_to_norm(*pair) for pair in zip(W, c, W_, c_)]
            W_, c_ = [w for w, _, _ in kept], [cl for _, cl, _ in kept]
        nxt = (W_, c_, [_zeros_like(w) for w in gW], [_zeros_like(g) for g in gc])
    else:  # the stream ends mid-mini-batch: keep W, carry the accumulated gradient P
        lamG = [lam[..., None] * g for g in G]
        P = [X[l].transpose(-1, -2) @ lamG[l] for l in range(L)]
        Pc = [lamG[l].sum(1) + gc[l] if mb.first else lamG[l].sum(1) for l in range(L)]
        nxt = (list(W), list(c), [gW[l] + P[l] if mb.first else P[l] for l in range(L)], Pc)
    return Zb[-1], nxt, _Cache(cur, X, Z, xh, mu, rstd, gy, G, Xb, Zb, S, AM, kept)


def _mm_add(c: Tensor, a: Tensor, b: Tensor, alpha: float = 1.0) -> Tensor:
    """``c + alpha a @ b`` (``alpha``: 1 or -1): ``torch.baddbmm`` in eager mode (one op);
    under ``torch.compile`` a product and an add, which inductor fuses into the loop that
    reads the result, where an external ``baddbmm`` would first copy ``c`` (often a
    broadcast bias) into its output (TTT-MLP's compiled chain: forward 15% faster, backward
    8%). Accumulating into an owned buffer stays ``Tensor.baddbmm_``."""
    if not torch.compiler.is_compiling():
        return torch.baddbmm(c, a, b, alpha=alpha)
    return c + a @ b if alpha == 1.0 else c - a @ b


def _zeros_like(t: Tensor) -> Tensor:
    """Zeros shaped like ``t`` without writing them: an expanded scalar, read-only."""
    return t.new_zeros(()).expand_as(t)


class _MiniBatchGrads(NamedTuple):
    """One mini-batch's share of the gradients of the chain's non-state inputs (``_Grads``):
    its slices ``dq, dk, dtgt: [R, b, d]``, ``dlam: [R, b]``, ``dA0, dM: [R, b, b]`` (``dM``
    None for TTT-Linear), and terms to add: ``dtau: [b]``, ``dlnw, dlnb: [R, 1, d]``."""

    dq: Tensor
    dk: Tensor
    dtgt: Tensor
    dlam: Tensor
    dA0: Tensor
    dM: Tensor | None
    dtau: Tensor
    dlnw: Tensor
    dlnb: Tensor


def _step_backward(mb: _MiniBatch, cc: _Cache, dzb: Tensor, dnext: tuple):
    """Backward of one mini-batch: ``(adjoint of its start state, _MiniBatchGrads)`` from the
    adjoint ``dnext`` of the next state and ``dzb: [R, b, d]``, that of the mini-batch's output
    ``Zb_{L-1}``. The weight adjoints of ``dnext`` are accumulated in place (the caller hands
    over ownership)."""
    W, c, gW, gc = cc.cur
    X, Z, G, Xb, Zb = cc.X, cc.Z, cc.G, cc.Xb, cc.Zb
    lam, M, tau, L = mb.lam, mb.M, mb.tau, len(W)
    dtau, dM = torch.zeros_like(tau), None
    dWn, dcn, dgWn, dgcn = dnext
    dW, dc = dWn, list(dcn)  # dW accumulates in place: the caller hands over ownership
    if cc.kept is not None:  # from here on dWn, dcn are the adjoints before the rescaling
        dWn, dcn, dW, dc = _rescale_backward(W, c, cc.kept, dWn, dcn)
    # dP, the adjoint of P = gW + X^T (lam o G), is -t dW' after a commit W' = W - t P and
    # dgW' without one; it is only ever used through small products, never materialised.
    if mb.commit:  # scale: -t or 1, a 0-dim tensor
        scale, dPW, dPc = mb.neg_t, dWn, [mb.neg_t * g for g in dcn]
    else:
        scale, dPW, dPc = mb.neg_t.new_ones(()), dgWn, dgcn
    dgW, dgc = None, None
    if mb.first:  # only the first mini-batch reads the accumulated gradient it started with
        dgW = [scale * g for g in dPW]
        dgc = list(dPc)
        if mb.commit:  # W' = W - t (gW + ...), c' = c - t (gc + ...)
            dtau[-1] -= sum((g * a).sum() for g, a in zip(dWn + dcn, gW + gc))
    dG, dX, dlam = [], [], torch.zeros_like(lam)
    for l in range(L):
        GdW = G[l] @ dPW[l].transpose(-1, -2)  # [R, b, d_l]
        XGdW = (X[l] * GdW).sum(-1)  # [R, b]
        dX.append((scale * lam)[..., None] * GdW)
        XdW = X[l] @ dPW[l]  # [R, b, d_{l+1}]
        dG.append(lam[..., None] * torch.addcmul(dPc[l].unsqueeze(1), XdW, scale))
        if mb.commit:  # and the rest of t's: W' = W - t X^T (lam o G), c' = c - t lam^T G
            Gdc = (G[l] * dcn[l].unsqueeze(1)).sum(-1)  # [R, b]
            dtau[-1] -= (lam * (XGdW + Gdc)).sum()
            dlam += scale * (XGdW + Gdc)
        else:
            dlam += XGdW + (G[l] * dPc[l].unsqueeze(1)).sum(-1)
    # dual chain: Zb_l = Xb_l W_l + c_l - (A_l + M) G_l - [first] tau o (Xb_l gW_l + gc_l)
    for l in reversed(range(L)):
        dW[l].baddbmm_(Xb[l].transpose(-1, -2), dzb)
        dc[l] = dc[l] + dzb.sum(1)
        dA = -dzb @ G[l].transpose(-1, -2)  # [R, b, b]
        dG[l] = _mm_add(dG[l], cc.AM[l].transpose(-1, -2), dzb, alpha=-1.0)
        dXb = dzb @ W[l].transpose(-1, -2)
        if mb.first:
            tdz = tau[:, None] * dzb
            dtau -= (dzb * _mm_add(gc[l].unsqueeze(1), Xb[l], gW[l])).sum((0, 2))
            dgW[l] = _mm_add(dgW[l], Xb[l].transpose(-1, -2), tdz, alpha=-1.0)
            dgc[l] = dgc[l] - tdz.sum(1)
            dXb = _mm_add(dXb, tdz, gW[l].transpose(-1, -2), alpha=-1.0)
        if l == 0:
            dA0, dq = dA, dXb  # dA0 is turned into dM, dQ and dK for all mini-batches at once
        else:  # (TTT-MLP: one layer l > 0)
            dM = dA * (cc.S[l] + 1.0)
            dS = dA * M
            dXb = _mm_add(dXb, dS, X[l])
            dX[l] = _mm_add(dX[l], dS.transpose(-1, -2), Xb[l])
            dzb = gelu_tanh_vjp(dXb, Zb[l - 1])
    dZ = [torch.zeros_like(z) for z in Z]
    # G_l = (G_{l+1} W_{l+1}^T) o gelu'(Z_l), l < L-1
    for l in range(L - 1):
        h = G[l + 1] @ W[l + 1].transpose(-1, -2)
        dh = gelu_tanh_vjp(dG[l], Z[l])
        dZ[l] = dZ[l] + dG[l] * h * gelu_tanh_grad2(Z[l])
        dG[l + 1] = _mm_add(dG[l + 1], dh, W[l + 1])
        dW[l + 1].baddbmm_(dh.transpose(-1, -2), G[l + 1])
    dZl, dtgt, dlnw, dlnb = _ln_grad_backward(mb, cc, dG[-1])
    dZ[-1] = dZ[-1] + dZl
    # Z_l = X_l W_l + c_l, X_{l+1} = gelu(Z_l), X_0 = K
    for l in reversed(range(L)):
        dW[l].baddbmm_(X[l].transpose(-1, -2), dZ[l])
        dc[l] = dc[l] + dZ[l].sum(1)
        dXl = _mm_add(dX[l], dZ[l], W[l].transpose(-1, -2))
        if l > 0:
            dZ[l - 1] = dZ[l - 1] + gelu_tanh_vjp(dXl, Z[l - 1])
        else:
            dk = dXl
    grads = _MiniBatchGrads(dq, dk, dtgt, dlam, dA0, dM, dtau, dlnw, dlnb)
    return (dW, dc, dgW, dgc), grads


def _rescale_backward(W: list, c: list, kept: list, dWk: list, dck: list) -> tuple:
    """Adjoint through the norm-keeping commit ``(W', c') = r (U, u)``,
    ``r = ||(W, c)|| / ||(U, u)||``, ``U = W - t P``, per layer: returns ``(dU, du, dW, dc)``.

    With ``g = <dW', W'> + <dc', c'>`` and ``n^2 = ||(W, c)||^2 = ||(W', c')||^2`` (per
    stream and head, ``[R]``): ``dU = r (dW' - g W' / n^2)`` (``r`` times the part of ``dW'``
    orthogonal to the new weights; ``du`` likewise), and ``W`` enters through ``U`` and the
    numerator of ``r``: ``dW = dU + g W / n^2``, ``dc = du + g c / n^2`` (fresh tensors: the
    start state's adjoints accumulate into them).
    """
    tiny = torch.finfo(W[0].dtype).tiny
    dU, du, dW, dc = [], [], [], []
    for w, cl, (wk, ck, r), dwk, dck_ in zip(W, c, kept, dWk, dck):
        g = (dwk * wk).sum((-2, -1)) + (dck_ * ck).sum(-1)  # [R]
        h = (g / pair_sq_norm(w, cl).clamp_min(tiny)).to(g.dtype)
        dU.append(r[:, None, None] * (dwk - h[:, None, None] * wk))
        du.append(r[:, None] * (dck_ - h[:, None] * ck))
        dW.append(torch.addcmul(dU[-1], h[:, None, None], w))  # U = W - t P: W's share
        dc.append(torch.addcmul(du[-1], h[:, None], cl))
    return dU, du, dW, dc


def _ln_grad_backward(mb: _MiniBatch, cc: _Cache, a: Tensor) -> tuple[Tensor, ...]:
    """Adjoint through ``G = J(Z) gy`` (the closed-form inner gradient): returns ``dZ`` and
    the gradients of the target, the LN weight and bias (``[R, b, d]``, ``[R, 1, d]`` x 2).

    ``a = dG: [R, b, d]``. ``J`` is the symmetric Jacobian of the normalisation, so
    ``dgy = J a``; the dependence of ``J`` on ``Z`` (through ``xh`` and ``s = 1/rstd``)
    gives the rest.
    """
    xh, z, mu, rstd, gy, lnw = cc.xh, cc.Z[-1], cc.mu, cc.rstd, cc.gy, mb.lnw
    dgy = ln_backward(a, z, mu, rstd)
    dtgt = -lnw * dgy
    dlnw = (dgy * (2 * lnw * xh + mb.lnb - mb.tgt)).sum(1, keepdim=True)
    dlnb = (dgy * lnw).sum(1, keepdim=True)
    mean = partial(torch.mean, dim=-1, keepdim=True)
    dxh = dgy * mb.lnw2 - (a * mean(gy * xh) + gy * mean(a * xh)) * rstd
    ds = -(a * cc.G[-1]).sum(-1, keepdim=True) * rstd
    return ln_backward(dxh, z, mu, rstd) + ds * xh / xh.shape[-1], dtgt, dlnw, dlnb
