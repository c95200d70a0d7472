"""Public entry points: ``ttt_linear``, ``ttt_mlp`` and ``ttt_decode``, with argument checks
and backend dispatch by argument (``impl=``), never by a global flag.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``b`` mini-batch size,
``m`` hidden width of TTT-MLP (``4d`` in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ttt_video.kernels.decode import ttt_decode_torch
from ttt_video.kernels.dual import ttt_dual
from ttt_video.kernels.naive import ttt_naive
from ttt_video.kernels.state import TTTState, initial_state

IMPLS = ("auto", "naive", "dual", "triton")


def ttt_linear(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    tau: Tensor | None,
    W1: Tensor | None,
    b1: Tensor | None,
    ln_weight: Tensor,
    ln_bias: Tensor,
    *,
    mini_batch_size: int = 16,
    causal: bool = True,
    initial_state: TTTState | None = None,
    output_final_state: bool = False,
    impl: str = "auto",
    save_every: int = 16,
    check_finite: bool = False,
    cu_seqlens: Tensor | None = None,
) -> Tensor | tuple[Tensor, TTTState]:
    """TTT-Linear over a stream: ``o_t = q_t + LN(q_t W_t + c_t)`` (TTT_SPEC sections 2-4).

    Args:
        q, k, v: ``[B, T, H, d]`` query, key and value views.
        lam: ``[B, T, H]`` per-token inner learning rates.
        tau: ``[b]`` position weights inside a mini-batch (may be None when not causal).
        W1: ``[H, d, d]`` or ``[B, H, d, d]``; b1: ``[H, d]`` or ``[B, H, d]``: the inner
            model's initial weights (may be None when ``initial_state`` is given).
        ln_weight, ln_bias: ``[H, d]`` the inner LayerNorm.
        mini_batch_size: ``b``.
        causal: False selects the non-causal video variant (update with the whole
            mini-batch, ``E[i, j] = lam_j / b``).
        initial_state: continue a stream from this state instead of ``(W1, b1)``.
        output_final_state: also return the final ``TTTState``.
        impl: ``"auto"`` (Triton for CUDA tensors, else the dual form), ``"naive"`` (primal,
            the reference), ``"dual"`` or ``"triton"`` (CPU tensors only under
            ``TRITON_INTERPRET=1``).
        save_every: dual and Triton forms: states kept for the backward every this many
            mini-batches.
        check_finite: raise ``ValueError`` naming the first input holding NaN or inf.
        cu_seqlens: ``[S + 1]`` offsets of ``S`` sequences packed along ``T`` (``B = 1``);
            each starts from the initial weights (or its row of a batch-``S``
            ``initial_state``) and the final state has batch ``S``.

    Returns:
        ``o: [B, T, H, d]``, and the final state when ``output_final_state``.
    """
    return _run(
        q,
        k,
        v,
        lam,
        tau,
        (W1,),
        (b1,),
        ln_weight,
        ln_bias,
        mini_batch_size,
        causal,
        initial_state,
        output_final_state,
        impl,
        save_every,
        check_finite,
        cu_seqlens,
    )


def ttt_mlp(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    tau: Tensor | None,
    W1: Tensor | None,
    b1: Tensor | None,
    W2: Tensor | None,
    b2: Tensor | None,
    ln_weight: Tensor,
    ln_bias: Tensor,
    *,
    mini_batch_size: int = 16,
    causal: bool = True,
    initial_state: TTTState | None = None,
    output_final_state: bool = False,
    impl: str = "auto",
    save_every: int = 16,
    check_finite: bool = False,
    cu_seqlens: Tensor | None = None,
) -> Tensor | tuple[Tensor, TTTState]:
    """TTT-MLP over a stream: the inner model is ``gelu_tanh(x W1 + b1) W2 + b2``.

    Shapes as ``ttt_linear`` with ``W1: [H, d, m]``, ``b1: [H, m]``, ``W2: [H, m, d]``,
    ``b2: [H, d]`` (each optionally with a leading batch dimension); ``cu_seqlens`` as there.
    """
    return _run(
        q,
        k,
        v,
        lam,
        tau,
        (W1, W2),
        (b1, b2),
        ln_weight,
        ln_bias,
        mini_batch_size,
        causal,
        initial_state,
        output_final_state,
        impl,
        save_every,
        check_finite,
        cu_seqlens,
    )


def ttt_decode(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    tau: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    state: TTTState,
    *,
    mini_batch_size: int = 16,
    impl: str = "auto",
    check_finite: bool = False,
) -> tuple[Tensor, TTTState]:
    """One causal token per stream, primal form, for TTT-Linear and TTT-MLP alike.

    Args:
        q, k, v: ``[B, 1, H, d]``; lam: ``[B, 1, H]``; tau: ``[b]``; ln_*: ``[H, d]``.
        state: the state after the tokens so far (``initial_state(...)`` at the start).
        impl: ``"auto"`` (Triton for CUDA tensors), ``"torch"`` or ``"triton"`` (no
            backward; ``kernels.triton.decode_step_`` updates a state in place).

    Returns:
        ``o: [B, 1, H, d]`` and the new state. The given state is not modified.
    """
    if impl not in ("auto", "torch", "triton"):
        raise ValueError(f"impl: expected 'auto', 'torch' or 'triton' for decoding, got {impl!r}")
    _check(
        q,
        k,
        v,
        lam,
        tau,
        state.weights,
        state.biases,
        ln_weight,
        ln_bias,
        mini_batch_size,
        True,
        state,
        check_finite,
    )
    if q.shape[1] != 1:
        raise ValueError(f"q: decoding takes one token, got T={q.shape[1]}")
    if impl == "triton" or (impl == "auto" and q.is_cuda):
        from ttt_video.kernels.triton import ttt_decode_triton

        return ttt_decode_triton(q, k, v, lam, tau, ln_weight, ln_bias, state, mini_batch_size)
    return ttt_decode_torch(q, k, v, lam, tau, ln_weight, ln_bias, state, mini_batch_size)


def _run(
    q,
    k,
    v,
    lam,
    tau,
    weights,
    biases,
    ln_weight,
    ln_bias,
    mini_batch_size,
    causal,
    state,
    output_final_state,
    impl,
    save_every,
    check_finite,
    cu_seqlens=None,
):
    if impl not in IMPLS:
        raise ValueError(f"impl: expected one of {IMPLS}, got {impl!r}")
    batch = q.shape[0] if cu_seqlens is None else _check_cu_seqlens(cu_seqlens, q)
    if state is None:
        for _i, t in enumerate(weights + biases):
            if t is None:
                raise ValueError("weights and biases are required when initial_state is None")
        _check(
            q,
            k,
            v,
            lam,
            tau,
            weights,
            biases,
            ln_weight,
            ln_bias,
            mini_batch_size,
            causal,
            None,
            check_finite,
            batch,
        )
        state = initial_state(weights, biases, batch)
    else:
        _check(
            q,
            k,
            v,
            lam,
            tau,
            state.weights,
            state.biases,
            ln_weight,
            ln_bias,
            mini_batch_size,
            causal,
            state,
            check_finite,
            batch,
        )
    if tau is None:
        tau = q.new_full((mini_batch_size,), 1.0 / mini_batch_size)
    if impl == "auto":
        impl = "triton" if q.is_cuda else "dual"
    if impl != "naive" and (not isinstance(save_every, int) or save_every <= 0):
        raise ValueError(f"save_every: expected a positive int, got {save_every!r}")
    args = (q, k, v, lam, tau, ln_weight, ln_bias, state, mini_batch_size, causal)
    if impl == "triton":
        from ttt_video.kernels.triton import ttt_triton

        o, final = ttt_triton(*args, save_every, cu_seqlens)
    elif cu_seqlens is not None:
        o, final = _run_packed(impl, args, save_every, cu_seqlens)
    elif impl == "naive":
        o, final = ttt_naive(*args)
    else:
        o, final = ttt_dual(*args, save_every)
    if output_final_state and cu_seqlens is not None:
        ends = {(state.position + n) % mini_batch_size for n in cu_seqlens.diff().tolist()}
        if len(ends) > 1:
            raise ValueError(
                "cu_seqlens: sequences end at different positions in their mini-batch "
                f"{sorted(ends)}; one TTTState cannot hold their final states"
            )
    return (o, final) if output_final_state else o


def _run_packed(impl, args, save_every, cu_seqlens):
    """PyTorch forms on a packed batch: each sequence on its own, from its own state row."""
    q, k, v, lam, tau, lnw, lnb, state, b, causal = args
    cu = cu_seqlens.tolist()
    outs, finals = [], []
    for s, (t0, t1) in enumerate(zip(cu[:-1], cu[1:])):
        row = TTTState(*(tuple(t[s : s + 1] for t in ts) for ts in _fields(state)), state.position)
        part = (x[:, t0:t1] for x in (q, k, v, lam))
        if impl == "naive":
            o, fin = ttt_naive(*part, tau, lnw, lnb, row, b, causal)
        else:
            o, fin = ttt_dual(*part, tau, lnw, lnb, row, b, causal, save_every)
        outs.append(o)
        finals.append(fin)
    stacked = (
        tuple(torch.cat(ts, 0) for ts in zip(*(getattr(f, name) for f in finals)))
        for name in ("weights", "biases", "grad_weights", "grad_biases")
    )
    return torch.cat(outs, 1), TTTState(*stacked, finals[-1].position)


def _fields(state: TTTState) -> tuple:
    return state.weights, state.biases, state.grad_weights, state.grad_biases


def _check_cu_seqlens(cu: Tensor, q: Tensor) -> int:
    """Validate packed-sequence offsets; return the number of sequences ``S``."""
    if not isinstance(cu, Tensor) or cu.dim() != 1 or cu.dtype.is_floating_point or len(cu) < 2:
        raise ValueError("cu_seqlens: expected a 1-D integer tensor [S + 1]")
    if q.dim() != 4 or q.shape[0] != 1:
        raise ValueError(
            f"cu_seqlens: packed sequences need B = 1, got q of shape {tuple(q.shape)}"
        )
    if cu[0] != 0 or cu[-1] != q.shape[1] or not bool((cu.diff() > 0).all()):
        raise ValueError(
            f"cu_seqlens: expected strictly increasing offsets from 0 to T={q.shape[1]}, "
            f"got {cu.tolist()}"
        )
    return len(cu) - 1


def _shape_error(name: str, got: Tensor, expected: str) -> ValueError:
    return ValueError(f"{name}: expected shape {expected}, got {tuple(got.shape)}")


def _check(
    q,
    k,
    v,
    lam,
    tau,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    ln_weight,
    ln_bias,
    b,
    causal,
    state,
    check_finite,
    batch=None,
) -> None:
    """Raise ``ValueError`` naming the first argument that breaks the contract.

    ``batch``: streams the state has (``B``, or the number of packed sequences).
    """
    if isinstance(b, bool) or not isinstance(b, int) or b <= 0:
        raise ValueError(f"mini_batch_size: expected a positive int, got {b!r}")
    for name, t in (
        ("q", q),
        ("k", k),
        ("v", v),
        ("lam", lam),
        ("ln_weight", ln_weight),
        ("ln_bias", ln_bias),
    ):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}: expected a tensor, got {type(t).__name__}")
    if q.dim() != 4:
        raise _shape_error("q", q, "[B, T, H, d]")
    B, T, H, d = q.shape
    batch = B if batch is None else batch
    if T == 0:
        raise ValueError("q: the stream is empty (T = 0)")
    for name, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise _shape_error(name, t, f"{list(q.shape)} (as q)")
    if lam.shape != (B, T, H):
        raise _shape_error("lam", lam, f"[B, T, H] = {[B, T, H]}")
    if causal and (tau is None or tau.shape != (b,)):
        raise ValueError(
            f"tau: expected shape [mini_batch_size] = [{b}], got "
            f"{None if tau is None else tuple(tau.shape)}"
        )
    for name, t in (("ln_weight", ln_weight), ("ln_bias", ln_bias)):
        if t.shape != (H, d):
            raise _shape_error(name, t, f"[H, d] = {[H, d]} (head dim of q is {d})")
    if state is not None:
        if not isinstance(state, TTTState):
            raise ValueError(f"initial_state: expected a TTTState, got {type(state).__name__}")
        if state.batch_size != batch:
            raise ValueError(f"initial_state: batch size {state.batch_size} != B={batch}")
        if not 0 <= state.position < b:
            raise ValueError(f"initial_state: position {state.position} outside [0, {b})")
        if not causal and state.position != 0:
            raise ValueError(
                "initial_state: the non-causal form cannot resume mid-mini-batch "
                f"(position {state.position}); cut streams at mini-batch borders"
            )
    width = d
    for i, (w, c) in enumerate(zip(weights, biases)):
        last = i == len(weights) - 1
        if (
            w.dim() not in (3, 4)
            or w.shape[-3] != H
            or w.shape[-2] != width
            or (last and w.shape[-1] != d)
        ):
            out = "d" if last else "m"
            raise _shape_error(f"W{i + 1}", w, f"[(B,) H={H}, {width}, {out}] (head dim d={d})")
        if w.dim() == 4 and w.shape[0] not in (1, batch):
            raise _shape_error(f"W{i + 1}", w, f"batch dimension 1 or B={batch}")
        if c.shape[-2:] != (H, w.shape[-1]) or c.dim() not in (2, 3):
            raise _shape_error(f"b{i + 1}", c, f"[(B,) H, {w.shape[-1]}]")
        width = w.shape[-1]
    if check_finite:
        named = [
            ("q", q),
            ("k", k),
            ("v", v),
            ("lam", lam),
            ("tau", tau),
            ("ln_weight", ln_weight),
            ("ln_bias", ln_bias),
        ]
        named += [(f"W{i + 1}", w) for i, w in enumerate(weights)]
        named += [(f"b{i + 1}", c) for i, c in enumerate(biases)]
        for name, t in named:
            if t is not None and not torch.isfinite(t).all():
                raise ValueError(f"{name}: holds NaN or inf values")
