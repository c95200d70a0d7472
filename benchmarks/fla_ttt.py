"""flash-linear-attention's TTT-Linear (``fla.ops.ttt.chunk_ttt_linear``) next to ours, for
``gpu_check.py``: the call on our inputs, and what it computes differently.

Its signature (read from its source, not installed here): ``chunk_ttt_linear(q, k, v, w, b,
eta, scale=None, eps=1e-6, chunk_size=16, initial_state=None, initial_state_bias=None,
output_final_state=False, cu_seqlens=None)`` on ``[B, T, H, d]`` tensors, ``w, b: [H, d]``
(the inner LayerNorm), ``eta: [B, T, H, 1]``, ``initial_state: [B, H, d, d]``,
``initial_state_bias: [B, H, 1, d]``; it returns ``(o, final_state, final_state_bias)``.
"""

from __future__ import annotations

import torch

from ttt_video.kernels.common import LN_EPS, layer_norm
from ttt_video.testing import TTTInputs, error_stats, run_ttt

FLA_DIFFERENCES = (
    "flash-linear-attention's chunk_ttt_linear against ttt_linear: (1) its output is "
    "z + LN(z), ours q + LN(z) (the paper's); (2) it scales q by d^-1/2 by default (passed "
    "1.0 here); (3) one learning rate per row, E[i, j] = eta_i, and the commit takes eta of "
    "the mini-batch's last token, where ours is E[i, j] = tau_i lam_j: the two agree only "
    "when lam is constant inside each mini-batch (eta_t = tau[t mod b] lam); (4) its "
    "initial state defaults to zeros, ours to the learned W1, b1 (passed as its initial "
    "state here); (5) its final state is (W, b) only, without the accumulated gradient and "
    "the position, so a stream resumes only at a mini-batch border; (6) TTT-Linear only and "
    "causal only (no TTT-MLP, no non-causal video variant)."
)


def import_fla():
    """``fla.ops.ttt.chunk_ttt_linear``, or None when flash-linear-attention is missing."""
    try:
        from fla.ops.ttt import chunk_ttt_linear
    except ImportError:
        return None
    return chunk_ttt_linear


def fla_call(chunk_ttt_linear, inp: TTTInputs, b: int, final: bool = False):
    """``chunk_ttt_linear`` on our inputs (``[B, T, H, d]``, TTT-Linear, streams starting at a
    mini-batch border), mapped as :data:`FLA_DIFFERENCES` says: no query scale,
    ``eta_t = tau[t mod b] * lam_t``, our initial weights as its initial state."""
    B, T, H, d = inp.q.shape
    eta = (inp.tau.repeat(T // b + 1)[:T][None, :, None] * inp.lam)[..., None]
    w0 = inp.weights[0].expand(B, H, d, d).float().contiguous()
    b0 = inp.biases[0][:, None].expand(B, H, 1, d).float().contiguous()
    return chunk_ttt_linear(
        inp.q,
        inp.k,
        inp.v,
        inp.ln_weight,
        inp.ln_bias,
        eta,
        scale=1.0,
        eps=LN_EPS,
        chunk_size=b,
        initial_state=w0,
        initial_state_bias=b0,
        output_final_state=final,
    )


def fla_semantics(chunk_ttt_linear, inp: TTTInputs, b: int) -> dict[str, float]:
    """Relative RMS errors of FLA against ``ttt_linear`` (Triton) on ``inp`` (``lam`` constant
    inside each mini-batch, ``T`` a multiple of ``b``): the final weights and bias (the update
    rule), and the output relation ``LN(o_fla - LN(z)) = LN(z)`` with ``LN(z) = o - q`` (ours
    is ``q + LN(z)``, so FLA's output is ``z + LN(z)`` for the same ``z``)."""
    with torch.no_grad():
        o, st = run_ttt("linear", inp, b, impl="triton", output_final_state=True)
        o_fla, w_fla, b_fla = fla_call(chunk_ttt_linear, inp, b, final=True)
        ln_z = o - inp.q
        z_fla = o_fla - ln_z
        return {
            "final W": error_stats(st.weights[0], w_fla)[1],
            "final b": error_stats(st.biases[0], b_fla.reshape(st.biases[0].shape))[1],
            "LN(o_fla - LN(z)) = LN(z)": error_stats(
                ln_z, layer_norm(z_fla, inp.ln_weight, inp.ln_bias)
            )[1],
        }
