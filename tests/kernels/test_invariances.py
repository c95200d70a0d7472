"""Recurrent invariances of the kernels: split passes, prefill + decode, checkpoint spacing,
no mutation of inputs, and gradcheck of the custom backward."""

import dataclasses

import pytest
import torch

from ttt_video.kernels import initial_state, ttt_decode
from ttt_video.testing import TTTInputs, assert_close, random_ttt_inputs, run_ttt


def part(inp: TTTInputs, start: int, stop: int) -> TTTInputs:
    """The tokens ``start:stop`` of a stream (parameters shared)."""
    cut = {f: getattr(inp, f)[:, start:stop] for f in ("q", "k", "v", "lam")}
    return dataclasses.replace(inp, **cut)


def run_from(kind, inp, b, state, impl="dual"):
    return run_ttt(kind, inp, b, initial_state=state, output_final_state=True, impl=impl)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("cuts", [(3,), (16,), (21,), (5, 9, 30), (1, 2, 3, 4)])
def test_split_stream_equals_one_pass(kind, cuts):
    b, T = 8, 37
    inp = random_ttt_inputs(kind, B=2, T=T, H=2, d=16, b=b, dtype=torch.float64, seed=7)
    o_ref, s_ref = run_ttt(kind, inp, b, output_final_state=True)
    bounds = (0, *cuts, T)
    state = initial_state(inp.weights, inp.biases, 2)
    outs = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        o, state = run_from(kind, part(inp, start, stop), b, state)
        outs.append(o)
    assert_close("o", o_ref, torch.cat(outs, 1), 1e-12)
    assert state.position == s_ref.position == T % b
    for a, c in zip(s_ref.weights + s_ref.grad_weights, state.weights + state.grad_weights):
        assert_close("state", a, c, 1e-12)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("prefill", [0, 5, 16, 19])
def test_prefill_then_decode_equals_one_pass(kind, prefill):
    b, T = 8, 29
    inp = random_ttt_inputs(kind, B=2, T=T, H=2, d=16, b=b, dtype=torch.float32, seed=prefill)
    o_ref, s_ref = run_ttt(kind, inp, b, output_final_state=True)
    state = initial_state(inp.weights, inp.biases, 2)
    outs = []
    if prefill:
        o, state = run_from(kind, part(inp, 0, prefill), b, state)
        outs.append(o)
    for t in range(prefill, T):
        x = part(inp, t, t + 1)
        o, state = ttt_decode(
            x.q, x.k, x.v, x.lam, x.tau, x.ln_weight, x.ln_bias, state, mini_batch_size=b
        )
        outs.append(o)
    assert_close("o", o_ref, torch.cat(outs, 1), 1e-5)
    assert state.position == s_ref.position
    for a, c in zip(
        s_ref.weights + s_ref.biases + s_ref.grad_weights + s_ref.grad_biases,
        state.weights + state.biases + state.grad_weights + state.grad_biases,
    ):
        assert_close("state", a, c, 1e-5)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_checkpoint_spacing_does_not_change_results(kind):
    inp = random_ttt_inputs(kind, B=2, T=70, H=2, d=16, b=8, dtype=torch.float64, seed=2)
    inp.requires_grad_()
    results = []
    for save_every in (1, 3, 100):
        o = run_ttt(kind, inp, 8, save_every=save_every)
        results.append((o, torch.autograd.grad(o.pow(2).sum(), inp.tensors())))
    for o, grads in results[1:]:
        assert_close("o", results[0][0], o, 1e-13)
        for a, c in zip(results[0][1], grads):
            assert_close("grad", a, c, 1e-13)


@pytest.mark.parametrize("impl", ["naive", "dual"])
def test_inputs_and_state_are_not_mutated(impl):
    inp = random_ttt_inputs("mlp", B=2, T=11, H=2, d=16, b=8, seed=5)
    before = [t.clone() for t in inp.tensors()]
    _, state = run_ttt("mlp", inp, 8, output_final_state=True, impl=impl)
    state_before = [t.clone() for t in state.weights + state.grad_weights]
    x = part(inp, 0, 1)
    ttt_decode(x.q, x.k, x.v, x.lam, x.tau, x.ln_weight, x.ln_bias, state, mini_batch_size=8)
    run_ttt("mlp", inp, 8, initial_state=state, impl=impl)
    for a, c in zip(before, inp.tensors()):
        assert torch.equal(a, c)
    for a, c in zip(state_before, state.weights + state.grad_weights):
        assert torch.equal(a, c)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_gradcheck_custom_backward(kind, causal):
    b = 4
    inp = random_ttt_inputs(kind, B=1, T=7, H=1, d=4, b=b, dtype=torch.float64, seed=11)
    inp.requires_grad_()
    tensors = inp.tensors() if causal else [t for t in inp.tensors() if t is not inp.tau]

    def fn(*xs):
        it = iter(xs)
        fields = {f: next(it) for f in ("q", "k", "v", "lam")}
        tau = next(it) if causal else inp.tau.detach()
        L = len(inp.weights)
        ws = tuple(next(it) for _ in range(L))
        bs = tuple(next(it) for _ in range(L))
        x = TTTInputs(
            **fields, tau=tau, weights=ws, biases=bs, ln_weight=next(it), ln_bias=next(it)
        )
        o, st = run_ttt(
            kind, x, b, causal=causal, impl="dual", save_every=1, output_final_state=True
        )
        return o, *st.weights, *st.grad_weights

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-7)


def test_bfloat16_inputs_track_float32():
    """bf16 in: computed in fp32 inside, returned in bf16, close to the fp32 run."""
    inp = random_ttt_inputs("linear", B=2, T=40, H=2, d=32, b=16, dtype=torch.float32, seed=9)
    ref = run_ttt("linear", inp, 16)
    low = dataclasses.replace(inp, **{f: getattr(inp, f).bfloat16() for f in ("q", "k", "v")})
    out = run_ttt("linear", low, 16)
    assert out.dtype == torch.bfloat16
    assert_close("o bf16", ref, out.float(), 2e-2)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_autocast_region_keeps_float32_inside(kind):
    """Inside a bf16 autocast region (``precision="bf16-mixed"``) the kernels still run in
    float32: same result as outside, forward and backward, no dtype clash."""
    inp = random_ttt_inputs(kind, B=2, T=20, H=2, d=16, b=8, seed=4).requires_grad_()
    ref = run_ttt(kind, inp, 8)
    ref_grads = torch.autograd.grad(ref.sum(), inp.tensors())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run_ttt(kind, inp, 8)
        grads = torch.autograd.grad(out.sum(), inp.tensors())
    assert out.dtype == torch.float32
    assert_close("o", ref, out, 1e-6)
    for a, c in zip(ref_grads, grads):
        assert_close("grad", a, c, 1e-6)
