"""Large-chunk TTT (LaCT, Zhang et al. 2025, arXiv 2505.23884): SwiGLU fast weights per head,
updated once per chunk of ``C`` tokens (kernels/README.md section 13).

- ``lact``: the entry point, argument checks and dispatch by ``impl``:
  ``"naive"`` (token by token with ``torch.func.grad``, the reference), ``"chunked"``
  (batched matmuls per chunk) or ``"auto"`` (``"chunked"``); ``LACT_IMPLS`` lists them.
- ``LaCTState`` / ``lact_initial_state``: the state carried between calls.
- ``update``: the end-of-chunk rule (momentum, Muon, row-norm rescaling), shared by both forms.

Chain of trust: ``naive`` (per token, inner gradients by ``torch.func.grad``) <= ``chunked``.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``m = r d`` hidden width,
``C`` chunk size.
"""

from __future__ import annotations

from typing import Literal, get_args

from torch import Tensor

from ttt_video.kernels.lact.chunked import lact_chunked
from ttt_video.kernels.lact.naive import lact_naive
from ttt_video.kernels.lact.state import LaCTState, chunk_segments, lact_initial_state
from ttt_video.kernels.lact.update import commit, newton_schulz5, rescale_rows

LaCTImpl = Literal["auto", "naive", "chunked"]
LACT_IMPLS: tuple[str, ...] = get_args(LaCTImpl)

__all__ = [
    "LACT_IMPLS",
    "LaCTImpl",
    "LaCTState",
    "chunk_segments",
    "commit",
    "lact",
    "lact_initial_state",
    "newton_schulz5",
    "rescale_rows",
]


def lact(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    W1: Tensor | None = None,
    W2: Tensor | None = None,
    W3: Tensor | None = None,
    *,
    chunk_size: int,
    causal: bool = True,
    momentum: float = 0.0,
    muon: bool = False,
    initial_state: LaCTState | None = None,
    output_final_state: bool = False,
    impl: LaCTImpl = "auto",
) -> Tensor | tuple[Tensor, LaCTState]:
    """LaCT over a stream: ``o_t = f_W(q_t)``, ``f(x) = W2 (silu(W1 x) * (W3 x))``, with ``W``
    updated once per chunk by the learning-rate weighted gradient of ``-<f(k_i), v_i>``.

    Args:
        q, k, v: ``[B, T, H, d]`` (``T >= 1``) queries, keys and values of the fast weights.
        lr: ``[B, T, H, 3]`` per-token learning rates of ``W1, W2, W3`` (``softplus`` outputs).
        W1, W3: ``[H, m, d]``; W2: ``[H, d, m]`` (or with a leading ``B``): the initial fast
            weights; None when ``initial_state`` is given (which holds them).
        chunk_size: ``C``, tokens per update.
        causal: True: a chunk's queries read the weights its chunk started with, then the
            chunk updates them (apply, then update). False: the chunk updates, then its
            queries read the new weights (update, then apply); a stream can then be cut only
            at chunk borders.
        momentum: ``beta`` in ``[0, 1)`` of the momentum on the chunk gradient (0: off).
        muon: orthogonalise each step by 5 Newton-Schulz iterations.
        initial_state: continue a stream from this state instead of ``(W1, W2, W3)``.
        output_final_state: also return the final ``LaCTState``.
        impl: one of ``LACT_IMPLS`` (module docstring).

    Returns:
        ``o: [B, T, H, d]`` in the dtype of ``q``, and the final state if asked.
    """
    _check(q, k, v, lr, chunk_size, momentum, impl)
    if initial_state is None:
        if W1 is None or W2 is None or W3 is None:
            raise ValueError("W1/W2/W3: required when initial_state is None")
        initial_state = lact_initial_state((W1, W2, W3), q.shape[0], momentum > 0)
    elif W1 is not None or W2 is not None or W3 is not None:
        raise ValueError("W1/W2/W3: pass None with initial_state (the state holds the weights)")
    _check_state(initial_state, q, chunk_size, causal, momentum)
    fn = lact_naive if impl == "naive" else lact_chunked
    o, final = fn(q, k, v, lr, initial_state, chunk_size, causal, momentum, muon)
    return (o, final) if output_final_state else o


def _check(q, k, v, lr, chunk_size, momentum, impl) -> None:
    if impl not in LACT_IMPLS:
        choices = ", ".join(repr(i) for i in LACT_IMPLS)
        raise ValueError(f"impl: expected one of {choices}, got {impl!r}")
    if q.ndim != 4 or q.shape[1] == 0 or not q.is_floating_point():
        raise ValueError(f"q: expected floating [B, T >= 1, H, d], got {tuple(q.shape)}")
    for name, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise ValueError(f"{name}: shape {tuple(t.shape)} != q's {tuple(q.shape)}")
    if lr.shape != (*q.shape[:3], 3):
        raise ValueError(f"lr: expected {(*q.shape[:3], 3)}, got {tuple(lr.shape)}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected an int >= 1, got {chunk_size!r}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum: expected 0 <= momentum < 1, got {momentum!r}")


def _check_state(state: LaCTState, q: Tensor, chunk_size: int, causal: bool, momentum: float):
    B, _, H, d = q.shape
    w1, w2, w3 = state.weights
    m = w1.shape[-2]
    expected = ((B, H, m, d), (B, H, d, m), (B, H, m, d))
    for i, (w, shape) in enumerate(zip(state.weights, expected)):
        if tuple(w.shape) != shape:
            raise ValueError(
                f"W{i + 1}: expected {shape} for q {tuple(q.shape)}, got {tuple(w.shape)}"
            )
    if (state.momentum is not None) != (momentum > 0):
        raise ValueError(
            f"initial_state: momentum={momentum} needs momentum buffers exactly when > 0 "
            f"(the state {'has' if state.momentum is not None else 'has no'} buffers)"
        )
    if not 0 <= state.position < chunk_size:
        raise ValueError(f"initial_state: position {state.position} outside [0, {chunk_size})")
    if not causal and state.position:
        raise ValueError(
            f"initial_state: a non-causal stream resumes only at a chunk border; this state is "
            f"{state.position} tokens into a chunk of {chunk_size}"
        )
