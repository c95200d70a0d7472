"""Public entry points: ``ttt_linear``, ``ttt_mlp`` and ``ttt_decode``, with argument checks
and backend dispatch by argument (``impl=``), never by a global flag.

``impl`` has one vocabulary, ``IMPLS`` (the ``Impl`` literal), shared by every entry point, the
layers and their configs:

- ``"naive"``: the primal form token by token (the reference; slow);
- ``"dual"``: the PyTorch dual form with an explicit backward;
- ``"triton"``: the Triton kernels (CUDA; CPU tensors only under ``TRITON_INTERPRET=1``);
- ``"auto"``: ``"triton"`` for CUDA tensors the kernels take (``triton_unsupported``), else
  ``"dual"``; on CUDA a fallback is announced once per reason with a warning.

Decoding one token is always the primal form: ``"naive"`` and ``"dual"`` run its PyTorch step,
``"triton"`` its Triton kernel (or, when a gradient is needed, the Triton scan over the token,
which has a backward), and ``"auto"`` the Triton kernel for CUDA tensors it takes when no
gradient is needed, else the PyTorch step.

``keep_inner_norm=True`` (every entry point) keeps the norm of each inner layer's weights and
bias fixed across commits (kernels/README.md section 15); the naive, dual and decode forms
compute it, the Triton kernels do not: ``"triton"`` raises, ``"auto"`` on CUDA runs the
PyTorch forms with a warning once.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``b`` mini-batch size,
``m`` hidden width of TTT-MLP (``4d`` in the paper).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from ttt_video.kernels import ops  # noqa: F401  (registers the custom ops the forms call)
from ttt_video.kernels.common import autograd_records
from ttt_video.kernels.decode import ttt_decode_torch
from ttt_video.kernels.dual import ttt_dual
from ttt_video.kernels.naive import ttt_naive
from ttt_video.kernels.state import TTTState, initial_state
from ttt_video.validation import check_positive

Impl = Literal["auto", "naive", "dual", "triton"]
IMPLS: tuple[str, ...] = get_args(Impl)
# What the Triton kernels are compiled and checked for (tests/kernels/test_triton_compile.py).
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
TRITON_MAX_HEAD_DIM = 128
TRITON_MINI_BATCH_SIZES = (16, 32, 64)
# The oldest GPU architecture the kernels are compiled and checked for (sm_80, sm_86, sm_89,
# sm_90): every launch of every input above fits the smallest shared memory of these, 99 KB
# per block (compile_check, benchmarks/kernels_gpu.md; tests/kernels/test_triton_compile.py).
# Older GPUs are refused; newer ones (sm_100, sm_120) are taken but not compiled here.
TRITON_MIN_CAPABILITY = (8, 0)
_warned: set[str] = set()
KEEP_NORM_UNSUPPORTED = "keep_inner_norm: the Triton kernels do not rescale the inner weights"


def triton_unsupported(
    dtype: torch.dtype,
    head_dim: int,
    mini_batch_size: int | None,
    hidden_width: int | None,
    capability: tuple[int, int] | None = None,
) -> str | None:
    """Why the Triton kernels cannot take these inputs, or None when they can.

    A pure function of the shapes, the dtype and the GPU's architecture (no tensor):
    ``impl="auto"`` on CUDA falls back to the dual form for a reason, ``impl="triton"``
    raises it.

    Args:
        dtype: of ``q``; head_dim: ``d``; mini_batch_size: ``b`` (None for a one-token decode
            step without gradient, whose kernel has no mini-batch tiles); hidden_width: ``m``
            of TTT-MLP (None for TTT-Linear); capability: the GPU's compute capability
            (``torch.cuda.get_device_capability``; None: not checked).
    """
    if dtype not in TRITON_DTYPES:
        names = ", ".join(str(t).removeprefix("torch.") for t in TRITON_DTYPES)
        return f"q: the Triton kernels take {names}, got {dtype}"
    if mini_batch_size is not None and mini_batch_size not in TRITON_MINI_BATCH_SIZES:
        return (
            f"mini_batch_size: the Triton kernels take {TRITON_MINI_BATCH_SIZES}, "
            f"got {mini_batch_size}"
        )
    if head_dim > TRITON_MAX_HEAD_DIM:
        return f"q: the Triton kernels take head dims up to {TRITON_MAX_HEAD_DIM}, got {head_dim}"
    if hidden_width is not None and hidden_width % 16:
        return f"W1: the Triton kernels need a hidden width divisible by 16, got {hidden_width}"
    if capability is not None and tuple(capability) < TRITON_MIN_CAPABILITY:
        oldest, this = ("sm_{}{}".format(*c) for c in (TRITON_MIN_CAPABILITY, capability))
        return (
            f"the Triton kernels are compiled and checked for {oldest} and newer GPUs (shared "
            f"memory, tensor-core products); this one is {this}"
        )
    if hopper_mlp_fault(dtype, head_dim, mini_batch_size, hidden_width, capability):
        return (
            "TTT-MLP with 16-bit inputs at head dims over 64 and mini-batches of 64 on sm_90: "
            "its forward kernel reads shared memory out of bounds there (compute-sanitizer on "
            "an H200, Triton 3.6; benchmarks/README.md, 'GPU check')"
        )
    return None


def hopper_mlp_fault(dtype, head_dim, mini_batch_size, hidden_width, capability) -> bool:
    """The one launch seen failing on a GPU: TTT-MLP, 16-bit, a 128 block (d > 64), b = 64 on
    a Hopper GPU (warp-group products over two warp groups); every other variant run there
    matched the dual form. Refused until a GPU run shows a fix."""
    return (
        hidden_width is not None
        and dtype in (torch.bfloat16, torch.float16)
        and head_dim > 64
        and mini_batch_size == 64
        and capability is not None
        and capability[0] == 9
    )


def gpu_capability(t: Tensor) -> tuple[int, int] | None:
    """The compute capability of ``t``'s GPU; None off CUDA."""
    return torch.cuda.get_device_capability(t.device) if t.is_cuda else None


def auto_impl(is_cuda: bool, unsupported: str | None) -> str:
    """What ``impl="auto"`` runs over a stream: ``"triton"`` for CUDA tensors the kernels
    take, else ``"dual"``; a CUDA fallback warns once per reason (``triton_unsupported``)."""
    if not is_cuda:
        return "dual"
    if unsupported is None:
        return "triton"
    if unsupported not in _warned:
        _warned.add(unsupported)
        warnings.warn(f"impl='auto' on CUDA runs PyTorch here: {unsupported}", stacklevel=2)
    return "dual"


def check_impl(impl: object) -> None:
    """Raise ``ValueError`` listing ``IMPLS`` unless ``impl`` is one of them."""
    if impl not in IMPLS:
        choices = ", ".join(repr(i) for i in IMPLS)
        raise ValueError(f"impl: expected one of {choices}, got {impl!r}")


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
    impl: Impl = "auto",
    save_every: int = 16,
    check_finite: bool = False,
    cu_seqlens: Tensor | None = None,
    keep_inner_norm: bool = False,
) -> Tensor | tuple[Tensor, TTTState]:
    """TTT-Linear over a stream: ``o_t = q_t + LN(q_t W_t + c_t)`` (kernels/README.md sections 1-4).

    Args:
        q, k, v: ``[B, T, H, d]`` query, key and value views (floating point).
        lam: ``[B, T, H]`` per-token inner learning rates.
        tau: ``[b]`` position weights inside a mini-batch (may be None when not causal).
        W1: ``[H, d, d]`` or ``[B, H, d, d]``; b1: ``[H, d]`` or ``[B, H, d]``: the inner
            model's initial weights; None when ``initial_state`` is given (which holds them).
        ln_weight, ln_bias: ``[H, d]`` the inner LayerNorm.
        mini_batch_size: ``b``.
        causal: False selects the non-causal video variant (update with the whole
            mini-batch, ``E[i, j] = lam_j / b``).
        initial_state: continue a stream from this state instead of ``(W1, b1)``.
        output_final_state: also return the final ``TTTState``.
        impl: one of ``IMPLS`` (module docstring): ``"auto"`` (Triton for CUDA tensors the
            kernels take, else the dual form), ``"naive"`` (primal, the reference),
            ``"dual"`` or ``"triton"``.
        save_every: dual and Triton forms: states kept for the backward every this many
            mini-batches.
        check_finite: raise ``ValueError`` naming the first input holding NaN or inf. Without
            it, a non-finite value poisons its token's output and every later one (the state
            learns from it); the dual and Triton forms spread it over its whole mini-batch,
            earlier tokens too (a 0 of the causal mask times NaN in their products).
        cu_seqlens: ``[S + 1]`` offsets of ``S`` sequences packed along ``T`` (``B = 1``);
            each starts from the initial weights (or its row of a batch-``S``
            ``initial_state``) and the final state has batch ``S``.
        keep_inner_norm: at each mini-batch commit, scale every inner layer's ``(W, b)``
            jointly back to its norm before the commit, per stream and head, so that it
            keeps the norm of the initial weights (kernels/README.md section 15). Not in
            the Triton kernels: ``impl="triton"`` raises, ``"auto"`` falls back.

    Returns:
        ``o: [B, T, H, d]``, and the final state when ``output_final_state``.

    Raises:
        ValueError: naming the first argument that breaks the contract (a shape, ``impl``,
            weights given together with ``initial_state``, ...).
        TypeError: naming the first tensor argument that is not floating point.
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
        keep_inner_norm,
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
    impl: Impl = "auto",
    save_every: int = 16,
    check_finite: bool = False,
    cu_seqlens: Tensor | None = None,
    keep_inner_norm: bool = False,
) -> Tensor | tuple[Tensor, TTTState]:
    """TTT-MLP over a stream: the inner model is ``gelu_tanh(x W1 + b1) W2 + b2``.

    Shapes as ``ttt_linear`` with ``W1: [H, d, m]``, ``b1: [H, m]``, ``W2: [H, m, d]``,
    ``b2: [H, d]`` (each optionally with a leading batch dimension); ``cu_seqlens`` and
    ``keep_inner_norm`` (which keeps the norms of ``(W1, b1)`` and ``(W2, b2)`` separately)
    as there.
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
        keep_inner_norm,
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
    impl: Impl = "auto",
    check_finite: bool = False,
    keep_inner_norm: bool = False,
) -> tuple[Tensor, TTTState]:
    """One causal token per stream, primal form, for TTT-Linear and TTT-MLP alike.

    Args:
        q, k, v: ``[B, 1, H, d]``; lam: ``[B, 1, H]``; tau: ``[b]``; ln_*: ``[H, d]``.
        state: the state after the tokens so far (``initial_state(...)`` at the start).
        impl: one of ``IMPLS``: ``"naive"`` and ``"dual"`` run the PyTorch step, ``"triton"``
            the Triton kernel (``kernels.triton.decode_step_`` updates a state in place; with a
            gradient, the Triton scan over the one token), ``"auto"`` the Triton kernel for
            CUDA tensors it takes when no gradient is needed.
        keep_inner_norm: as ``ttt_linear``: a commit (the token at the last position of its
            mini-batch) keeps the norm of every inner layer's ``(W, b)``.

    Returns:
        ``o: [B, 1, H, d]`` and the new state. The given state is not modified.
    """
    check_impl(impl)
    _check_keep_norm(keep_inner_norm, impl)
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
    tensors = (q, k, v, lam, tau, ln_weight, ln_bias, *(t for ts in _fields(state) for t in ts))
    needs_grad = autograd_records(tensors)
    hidden = state.weights[0].shape[-1] if state.num_layers == 2 else None
    unsupported = (
        KEEP_NORM_UNSUPPORTED
        if keep_inner_norm
        else triton_unsupported(
            q.dtype, q.shape[-1], mini_batch_size if needs_grad else None, hidden
        )
    )
    if decode_backend(impl, q.is_cuda, needs_grad, unsupported) == "triton":
        from ttt_video.kernels.triton import ttt_decode_triton

        return ttt_decode_triton(q, k, v, lam, tau, ln_weight, ln_bias, state, mini_batch_size)
    args = (q, k, v, lam, tau, ln_weight, ln_bias, state, mini_batch_size)
    return ttt_decode_torch(*args, keep_inner_norm=keep_inner_norm)


def decode_backend(
    impl: Impl, is_cuda: bool, needs_grad: bool, unsupported: str | None = None
) -> str:
    """The one-token step ``impl`` runs: ``"triton"`` or ``"torch"`` (the PyTorch step).

    ``naive``/``dual`` -> torch; ``triton`` -> triton (with a gradient, the Triton scan);
    ``auto`` -> triton for CUDA tensors the kernels take (``unsupported`` is None, else a
    warning once per reason) when no gradient is needed, torch otherwise.
    """
    if impl == "triton":
        return "triton"
    if impl == "auto" and is_cuda and not needs_grad:
        return "torch" if auto_impl(True, unsupported) == "dual" else "triton"
    return "torch"


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
    keep_inner_norm=False,
):
    check_impl(impl)
    _check_keep_norm(keep_inner_norm, impl)
    batch = q.shape[0] if cu_seqlens is None else _check_cu_seqlens(cu_seqlens, q)
    if state is None:
        if any(t is None for t in weights + biases):
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
        given = [
            f"{kind}{i + 1}"
            for i, pair in enumerate(zip(weights, biases))
            for kind, t in zip("Wb", pair)
            if t is not None
        ]
        if given:
            raise ValueError(
                f"{given[0]}: pass None for {', '.join(given)} when initial_state is given "
                "(the state holds the inner weights; these would be ignored)"
            )
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
        hidden = state.weights[0].shape[-1] if state.num_layers == 2 else None
        reason = (
            KEEP_NORM_UNSUPPORTED
            if keep_inner_norm
            else triton_unsupported(
                q.dtype, q.shape[-1], mini_batch_size, hidden, gpu_capability(q)
            )
        )
        impl = auto_impl(q.is_cuda, reason)
    if impl != "naive":
        check_positive({"save_every": save_every}, integer=True)
    args = (q, k, v, lam, tau, ln_weight, ln_bias, state, mini_batch_size, causal)
    if impl == "triton":
        from ttt_video.kernels.triton import ttt_triton

        o, final = ttt_triton(*args, save_every, cu_seqlens)
    elif cu_seqlens is not None:
        o, final = _run_packed(impl, args, save_every, cu_seqlens, keep_inner_norm)
    elif impl == "naive":
        o, final = ttt_naive(*args, keep_inner_norm=keep_inner_norm)
    else:
        o, final = ttt_dual(*args, save_every, keep_inner_norm=keep_inner_norm)
    if output_final_state and cu_seqlens is not None:
        ends = {(state.position + n) % mini_batch_size for n in cu_seqlens.diff().tolist()}
        if len(ends) > 1:
            raise ValueError(
                "cu_seqlens: sequences end at different positions in their mini-batch "
                f"{sorted(ends)}; one TTTState cannot hold their final states"
            )
    return (o, final) if output_final_state else o


def _run_packed(impl, args, save_every, cu_seqlens, keep_inner_norm):
    """PyTorch forms on a packed batch: each sequence on its own, from its own state row."""
    q, k, v, lam, tau, lnw, lnb, state, b, causal = args
    cu = cu_seqlens.tolist()
    outs, finals = [], []
    for s, (t0, t1) in enumerate(zip(cu[:-1], cu[1:])):
        row = TTTState(*(tuple(t[s : s + 1] for t in ts) for ts in _fields(state)), state.position)
        part = (x[:, t0:t1] for x in (q, k, v, lam))
        if impl == "naive":
            o, fin = ttt_naive(*part, tau, lnw, lnb, row, b, causal, keep_inner_norm)
        else:
            o, fin = ttt_dual(*part, tau, lnw, lnb, row, b, causal, save_every, keep_inner_norm)
        outs.append(o)
        finals.append(fin)
    stacked = (
        tuple(torch.cat(ts, 0) for ts in zip(*(getattr(f, name) for f in finals)))
        for name in ("weights", "biases", "grad_weights", "grad_biases")
    )
    return torch.cat(outs, 1), TTTState(*stacked, finals[-1].position)


def _check_keep_norm(keep_inner_norm: object, impl: str) -> None:
    """Raise ``ValueError`` unless ``keep_inner_norm`` is a bool the chosen ``impl`` computes."""
    if not isinstance(keep_inner_norm, bool):
        raise ValueError(f"keep_inner_norm: expected a bool, got {keep_inner_norm!r}")
    if keep_inner_norm and impl == "triton":
        raise ValueError(
            "impl='triton': keep_inner_norm=True is not implemented by the Triton kernels; "
            "use impl='dual' (or 'auto', which falls back to it)"
        )


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
    check_positive({"mini_batch_size": b}, integer=True)
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
    floats = [("q", q), ("k", k), ("v", v), ("lam", lam), ("tau", tau)]
    floats += [(f"W{i + 1}", w) for i, w in enumerate(weights)]
    floats += [(f"b{i + 1}", c) for i, c in enumerate(biases)]
    floats += [("ln_weight", ln_weight), ("ln_bias", ln_bias)]
    for name, t in floats:
        if isinstance(t, Tensor) and not t.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {t.dtype}")
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
            raise ValueError(
                f"initial_state: {state.position} tokens into its mini-batch, not below "
                f"mini_batch_size={b}; a state continues only with the mini-batch size it was "
                "made with"
            )
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
