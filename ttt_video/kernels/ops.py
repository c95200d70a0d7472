"""The TTT kernels as ``torch.library`` custom ops, so that ``torch.compile`` and
``torch.export`` keep each kernel, forward and backward, as one node on every device.

The ops (``torch.ops.ttt_video.*``) and what they run:

- ``dual_scan`` / ``dual_scan_backward``: ``dual.scan_forward`` / ``dual.scan_backward``, the
  state chain of the dual form (PyTorch, any device);
- ``triton_scan`` / ``triton_scan_backward``: ``triton.scan.launch_scan`` /
  ``launch_scan_backward``, the same chain with the Triton kernels;
- ``triton_decode``: ``triton.decode.decode_step_`` on a copy of the state, one token.

Every op has a fake implementation (``register_fake``): the shapes, dtypes and strides of its
outputs from those of its inputs, which is all tracing needs, so no kernel runs while
compiling. The forward ops have a backward (``register_autograd``) that calls their backward
op, so an AOT-compiled or exported backward graph holds it as one node too. They are called
by ``dual.ttt_dual``, ``triton.scan.ttt_triton`` and ``triton.decode.ttt_decode_triton``,
which do the layout around them with ordinary differentiable ops.

What a custom op's signature allows, and how the kernels fit it:

- arguments are Tensors, lists of Tensors, ints, floats and bools: a ``TTTState`` travels
  flattened, ``[*weights, *biases, *grad_weights, *grad_biases]`` (``4 L`` tensors for ``L``
  inner layers), its position as an int (decode) or folded into the layout (scans);
- outputs are new tensors, aliasing no input and no other output, with the strides the fake
  implementation gives (a compiled graph may rely on them): contiguous;
- inputs are never modified (``mutates_args=()``);
- no argument has a default: torch 2.11's dispatcher drops trailing arguments equal to their
  defaults, and a registered backward must then return one gradient per argument passed;
- what a backward needs from its forward that is not an input (the states the forward kept
  every ``save_every`` mini-batches) is an extra output, which ``setup_context`` saves.

``ttt_dual`` calls ``dual_scan`` only while ``torch.compile`` or ``torch.export`` trace
(``torch.compiler.is_compiling()``); in eager mode it runs the same functions, with the same
``setup_context``, through the autograd.Function ``dual._DualScan``: a custom op's round
trips between Python and the dispatcher cost tens of microseconds a call (PyTorch issue
176592): 7% of a one-mini-batch TTT-Linear forward on a CPU, 12% with its backward. The Triton ops are called in eager mode
too. The Triton modules are imported when a Triton op first runs: this module and the CPU
path do not need Triton.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ttt_video.kernels import dual
from ttt_video.kernels.common import without_autocast
from ttt_video.kernels.state import TTTState

# ----------------------------------------------------------------------------------------
# The dual form (PyTorch)


@torch.library.custom_op("ttt_video::dual_scan", mutates_args=())
@without_autocast
def dual_scan(
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
    keep_norm: bool,
    graph_minibatches: int,
) -> list[Tensor]:
    """The state chain of the dual form: ``[zbar, *final state, *checkpoints]``.

    ``q, k, tgt: [R, N, b, d]``, ``lam: [R, N, b]``, ``tau: [b]``, ``lnw, lnb: [R, 1, d]``,
    ``state``: ``4 L`` tensors ``[R, ...]``; ``keep_norm``: the ``keep_inner_norm`` commit;
    ``graph_minibatches``: 0 runs the chain eager, else compiled, as one graph up to this many
    mini-batches (``dual.run_chain``); outputs as ``dual.scan_forward``, contiguous.
    """
    out = dual.run_chain(
        dual.scan_forward, graph_minibatches,
        q, k, tgt, lam, tau, lnw, lnb, state, causal, commit_last, save_every, keep_norm,
    )  # fmt: skip
    return [t.contiguous() for t in out]


@dual_scan.register_fake
def _(q, k, tgt, lam, tau, lnw, lnb, state, causal, commit_last, save_every, *flags):
    saved = dual.num_checkpoints(q.shape[1], save_every) - 1
    return [
        q.new_empty(q.shape),
        *(t.new_empty(t.shape) for t in state),
        *(t.new_empty((saved, *t.shape)) for t in state[: len(state) // 2]),
    ]


@torch.library.custom_op("ttt_video::dual_scan_backward", mutates_args=())
def dual_scan_backward(
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
    keep_norm: bool,
    graph_minibatches: int,
) -> list[Tensor]:
    """The backward of ``dual_scan``: ``[dq, dk, dtgt, dlam, dtau, dlnw, dlnb, *dstate]``
    shaped as those inputs, given the adjoints of ``zbar`` and of the final state."""
    out = dual.run_chain(
        dual.scan_backward, graph_minibatches,
        q, k, tgt, lam, tau, lnw, lnb, state, checkpoints, dzbar, dfinal,
        causal, commit_last, save_every, keep_norm,
    )  # fmt: skip
    return [t.contiguous() for t in out]


@dual_scan_backward.register_fake
def _(q, k, tgt, lam, tau, lnw, lnb, state, checkpoints, dzbar, dfinal, *flags):
    return [t.new_empty(t.shape) for t in (q, k, tgt, lam, tau, lnw, lnb, *state)]


def _dual_backward(ctx, grads):
    args, _ = dual.backward_args(ctx, grads)  # the op keeps no intermediates
    args = (*args, ctx.graph_minibatches)
    out = torch.ops.ttt_video.dual_scan_backward.default(*args)
    return (*dual.input_grads(ctx, out), None, None, None, None, None)


dual_scan.register_autograd(_dual_backward, setup_context=dual.setup_context)

# ----------------------------------------------------------------------------------------
# The Triton kernels


@torch.library.custom_op("ttt_video::triton_scan", mutates_args=())
def triton_scan(
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
    """The state chain on packed blocks with the Triton kernels: ``[zb, *final state,
    *saved weights and biases]`` (arguments and outputs: ``triton.scan.launch_scan``)."""
    from ttt_video.kernels.triton.scan import launch_scan

    return launch_scan(
        q, k, v, lam, tau, lnw, lnb, cu_blk, cu_ck, commit, state,
        mini_batch_size, group, causal, has_acc, checkpoints,
    )  # fmt: skip


@triton_scan.register_fake
def _(q, k, v, lam, tau, lnw, lnb, cu_blk, cu_ck, commit, state, b, group, causal, has_acc, C):
    H, NT, d = q.shape
    f32 = torch.float32
    cks = [q.new_empty((C, H, *t.shape[2:]), dtype=f32) for t in state[: len(state) // 2]]
    return [q.new_empty((H, NT, d), dtype=f32), *(torch.empty_like(t) for t in state), *cks]


@torch.library.custom_op("ttt_video::triton_scan_backward", mutates_args=())
def triton_scan_backward(
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
    """The backward of ``triton_scan``: ``[dq, dk, dv, dlam, dtau [S, H, b], dlnw, dlnb
    [S, H, d] (per program), *adjoint of the initial state]`` (``launch_scan_backward``)."""
    from ttt_video.kernels.triton.scan import launch_scan_backward

    return launch_scan_backward(
        q, k, v, lam, tau, lnw, lnb, cu_blk, cu_ck, commit, gacc, checkpoints, dzb, dfinal,
        mini_batch_size, group, causal, has_acc,
    )  # fmt: skip


@triton_scan_backward.register_fake
def _(q, k, v, lam, tau, lnw, lnb, cu_blk, cu_ck, commit, gacc, cks, dzb, dfinal, b, *flags):
    H, NT, d = q.shape
    S, f32 = commit.shape[0], torch.float32
    grads = [q.new_empty(q.shape, dtype=f32) for _ in range(3)] + [torch.empty_like(lam)]
    per_program = [q.new_empty(shape, dtype=f32) for shape in ((S, H, b), (S, H, d), (S, H, d))]
    return [*grads, *per_program, *(torch.empty_like(g) for g in dfinal)]


def _triton_setup(ctx, inputs, output):
    q, k, v, lam, tau, lnw, lnb, cu_blk, cu_ck, commit, state, b, group, causal, has_acc, _ = inputs
    L = len(state) // 4
    ctx.save_for_backward(
        q, k, v, lam, tau, lnw, lnb, cu_blk, cu_ck, commit, *state[2 * L :], *output[1 + 4 * L :]
    )
    # the accumulated gradient's terms are needed when it has a gradient, even at position 0
    has_acc = has_acc or any(t.requires_grad for t in state[2 * L :])
    ctx.args = (L, b, group, causal, has_acc)


def _triton_backward(ctx, grads):
    L, b, group, causal, has_acc = ctx.args
    q, k, v, lam, tau, lnw, lnb, cu_blk, cu_ck, commit, *rest = ctx.saved_tensors
    gacc, cks = rest[: 2 * L], rest[2 * L :]
    dzb = torch.zeros_like(q, dtype=torch.float32) if grads[0] is None else grads[0]
    like = [*cks[: 2 * L], *gacc]  # [S, H, ...] shapes of the state tensors, fp32
    S, H = commit.shape[0], q.shape[0]
    dfinal = [
        q.new_zeros((S, H, *t.shape[2:]), dtype=torch.float32) if g is None else g.contiguous()
        for g, t in zip(grads[1 : 1 + 4 * L], like)
    ]
    out = torch.ops.ttt_video.triton_scan_backward.default(
        q, k, v, lam, tau, lnw, lnb, cu_blk, cu_ck, commit, list(gacc), list(cks),
        dzb.contiguous(), dfinal, b, group, causal, has_acc,
    )  # fmt: skip
    dq, dk, dv, dlam, dtau, dlnw, dlnb, *dstate = out
    dtau = dtau.sum((0, 1)) if causal else None
    inputs = (dq.to(q.dtype), dk.to(q.dtype), dv.to(q.dtype), dlam, dtau, dlnw.sum(0), dlnb.sum(0))
    return (*inputs, None, None, None, dstate, None, None, None, None, None)


triton_scan.register_autograd(_triton_backward, setup_context=_triton_setup)


@torch.library.custom_op("ttt_video::triton_decode", mutates_args=())
def triton_decode(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    tau: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    state: list[Tensor],
    position: int,
    mini_batch_size: int,
) -> list[Tensor]:
    """One token on an fp32 copy of ``state`` (weights, biases, accumulated gradients of
    weights and biases) with the Triton kernel: ``[o, *new state]``."""
    from ttt_video.kernels.triton.decode import decode_step_

    L = len(state) // 4
    fresh = [t.to(torch.float32).contiguous().clone() for t in state]
    parts = (fresh[:L], fresh[L : 2 * L], fresh[2 * L : 3 * L], fresh[3 * L :])
    start = TTTState(*map(tuple, parts), position)
    o = decode_step_(q, k, v, lam, tau, ln_weight, ln_bias, start, mini_batch_size)[0]
    return [o, *fresh]


@triton_decode.register_fake
def _(q, k, v, lam, tau, ln_weight, ln_bias, state, position, mini_batch_size):
    return [torch.empty_like(q), *(torch.empty_like(t, dtype=torch.float32) for t in state)]
