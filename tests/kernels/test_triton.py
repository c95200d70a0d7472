"""Chain of trust, last link: the Triton kernels (run by the interpreter on CPU) equal the
PyTorch dual form on outputs, final states and every gradient; packed (varlen) batches equal
their sequences run alone; bf16 stays within 2x of a bf16 PyTorch run's error."""

import dataclasses
import re
import warnings

import pytest
import torch
from test_dual_vs_naive import check_same, grad_names, outputs_and_grads, probe_loss, state_tensors
from test_invariances import part

from ttt_video.kernels import TTTState, initial_state, ttt_decode
from ttt_video.kernels import api as kernels_api
from ttt_video.kernels.triton import decode_step_, scan
from ttt_video.testing import TTTInputs, assert_close, error_stats, random_ttt_inputs, run_ttt


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
        ("linear", 128, 80, 64, True),  # fp32 products in chunks (scan.contraction_chunk)
        ("mlp", 32, 40, 16, True),
        ("mlp", 96, 20, 16, False),
    ],
)
def test_triton_matches_dual_float32(kind, d, T, b, causal):
    B = 1 if d > 64 else 2  # the interpreter is slow; two streams suffice at large d
    inp = random_ttt_inputs(kind, B=B, T=T, H=2, d=d, b=b, seed=T + d).requires_grad_()
    ref = outputs_and_grads(kind, inp, b, causal, "dual")
    out = outputs_and_grads(kind, inp, b, causal, "triton", save_every=2)
    check_same(kind, ref, out, 2e-5)


@pytest.mark.parametrize(
    "kind, d, T",
    [("linear", 16, 30), ("mlp", 16, 30)]
    + [(kind, 96, T) for kind in ("linear", "mlp") for T in (30, 8)],
)
def test_triton_resumes_mid_minibatch(kind, d, T):
    """Initial state at position 5 with an accumulated gradient: outputs, final state and
    the gradient of every initial-state tensor (weights and accumulated gradient) and of
    the inputs (the accumulated gradient's terms reach q and tau). At d = 96 (a 128 block)
    the kernels read their fp32 products in chunks (scan.contraction_chunk); T = 8 ends in the
    mini-batch it starts in (first and last at once: no commit, Gacc carried on)."""
    b = 16
    B = H = 1 if d > 64 else 2  # the interpreter is slow at large d
    inp = random_ttt_inputs(kind, B=B, T=T, H=H, d=d, b=b, seed=3).requires_grad_()
    prefix = random_ttt_inputs(kind, B=B, T=5, H=H, d=d, b=b, seed=4)
    _, first = run_ttt(kind, prefix, b, output_final_state=True)
    vals = [t.detach().clone().requires_grad_() for t in state_tensors(first).values()]
    L = first.num_layers
    start = TTTState(
        tuple(vals[:L]), tuple(vals[L : 2 * L]), tuple(vals[2 * L : 3 * L]), tuple(vals[3 * L :]), 5
    )
    res = {}
    for impl in ("dual", "triton"):
        o, st = run_ttt(kind, inp, b, impl=impl, initial_state=start, output_final_state=True)
        wrt = [*vals, *inp.tensors()]
        res[impl] = (o, st, torch.autograd.grad(probe_loss(o, st), wrt, allow_unused=True))
    assert res["triton"][1].position == (5 + T) % b
    assert_close("o", res["dual"][0], res["triton"][0], 2e-5)
    names = [f"initial {n}" for n in state_tensors(first)] + grad_names(kind)
    for name, a, c in zip(names, res["dual"][2], res["triton"][2], strict=True):
        if a is None:  # the inputs' own initial weights: the run starts from `start`
            assert c is None, name
            continue
        assert_close(f"grad {name}", a, c, 2e-5)


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
        o_ref, ref = ttt_decode(*token(inp, t), ref, mini_batch_size=b, impl="dual")
        o, new = decode_step_(*token(inp, t), own, mini_batch_size=b)
        assert new.weights[0] is own.weights[0] and new.position == ref.position
        own = new
        assert_close(f"o[{t}]", o_ref, o, 1e-5)
        for name, a in state_tensors(ref).items():
            assert_close(f"{name} after {t}", a, state_tensors(own)[name], 1e-5)


def packed_outputs_and_grads(kind, inp, b, cu, impl):
    # save_every=1: one saved state per mini-batch, so the per-sequence offsets matter
    o, st = run_ttt(kind, inp, b, impl=impl, cu_seqlens=cu, output_final_state=True, save_every=1)
    return o, st, torch.autograd.grad(probe_loss(o, st), inp.tensors())


@pytest.mark.parametrize("kind, d", [("linear", 32), ("mlp", 16)])
def test_triton_varlen_equals_sequences_alone(kind, d):
    """Three documents of 3, 19 and 19 tokens packed into one row (each restarts from the
    initial weights) == each run alone with Triton, and == the packed PyTorch reference."""
    b, cu = 16, torch.tensor([0, 3, 22, 41])
    inp = random_ttt_inputs(kind, B=1, T=41, H=2, d=d, b=b, seed=8).requires_grad_()
    o, st, grads = packed_outputs_and_grads(kind, inp, b, cu, "triton")
    assert st.batch_size == 3 and st.position == 3
    for s, (t0, t1) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
        alone, fin = run_ttt(kind, part(inp, t0, t1), b, impl="triton", output_final_state=True)
        assert_close(f"o of sequence {s}", alone, o[:, t0:t1], 1e-6)
        for name, t in state_tensors(fin).items():
            assert_close(
                f"final {name} of sequence {s}", t, state_tensors(st)[name][s : s + 1], 1e-6
            )
    check_same(kind, packed_outputs_and_grads(kind, inp, b, cu, "dual"), (o, st, grads), 2e-5)


def test_varlen_final_state_needs_equal_end_positions():
    inp = random_ttt_inputs("linear", B=1, T=20, H=1, d=16, b=16, seed=0)
    cu = torch.tensor([0, 5, 20])
    assert run_ttt("linear", inp, 16, impl="triton", cu_seqlens=cu).shape == inp.q.shape
    with pytest.raises(ValueError, match="sequences end at different positions"):
        run_ttt("linear", inp, 16, impl="triton", cu_seqlens=cu, output_final_state=True)
    for bad in (torch.tensor([0, 5, 19]), torch.tensor([0, 5, 5, 20]), torch.tensor([[0, 20]])):
        with pytest.raises(ValueError, match="^cu_seqlens: expected"):
            run_ttt("linear", inp, 16, impl="triton", cu_seqlens=bad)


def low_precision_errors(kind, impl, base, b, dtype):
    """Relative errors of a run in ``dtype`` against the fp64 dual form on unrounded inputs."""

    def run(inp, impl):
        o, st = run_ttt(kind, inp, b, impl=impl, output_final_state=True)
        return o, st.weights[-1], *torch.autograd.grad(probe_loss(o.double(), st), inp.tensors())

    ref = run(base.to("cpu", torch.float64), "dual")
    return [error_stats(r, x)[1] for r, x in zip(ref, run(base.to("cpu", dtype), impl))]


@pytest.mark.parametrize(
    "kind, dtype",
    [("linear", torch.bfloat16), ("mlp", torch.bfloat16), ("linear", torch.float16)],
    ids=["linear-bf16", "mlp-bf16", "linear-fp16"],
)
def test_triton_low_precision_within_twice_a_pytorch_run(kind, dtype):
    """bf16/fp16 inputs, products in that dtype with fp32 accumulation: the error against
    fp64 is at most ~2x that of the PyTorch dual form on the same inputs (fp32 inside)."""
    b = 16
    base = random_ttt_inputs(kind, B=1, T=40, H=2, d=32, b=b, dtype=torch.float64, seed=5)
    names = ["o", "final W", *grad_names(kind)]
    ref = low_precision_errors(kind, "dual", base, b, dtype)
    out = low_precision_errors(kind, "triton", base, b, dtype)
    for name, e_ref, e_out in zip(names, ref, out):
        assert e_out <= 2.0 * e_ref + 1e-4, f"{name}: triton {e_out:.2e} vs dual {e_ref:.2e}"


def test_impl_dispatch_and_device_errors(monkeypatch):
    inp = random_ttt_inputs("linear", B=1, T=16, H=1, d=16, b=16, seed=0)
    assert torch.equal(run_ttt("linear", inp, 16), run_ttt("linear", inp, 16, impl="dual"))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the kernels pick their own dtypes
        mixed = run_ttt("linear", inp, 16, impl="triton")
    assert torch.equal(mixed, run_ttt("linear", inp, 16, impl="triton"))
    small_b = dataclasses.replace(inp, tau=inp.tau[:8])
    with pytest.raises(ValueError, match=r"^impl='triton': mini_batch_size: .* got 8"):
        run_ttt("linear", small_b, 8, impl="triton")
    monkeypatch.setattr(scan, "linear_fwd_kernel", object())  # as if compiled for a GPU
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        run_ttt("linear", inp, 16, impl="triton")
    # the device problem is the one to report, not the mini-batch size it would also refuse
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        run_ttt("linear", small_b, 8, impl="triton")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ttt_decode(*token(small_b, 0), initial_state_of(small_b), mini_batch_size=8, impl="triton")


def initial_state_of(inp: TTTInputs) -> TTTState:
    return initial_state(inp.weights, inp.biases, inp.q.shape[0])


@pytest.mark.parametrize(
    "dtype, d, b, m, reason",
    [
        (torch.float64, 64, 16, None, r"^q: the Triton kernels take float32, bfloat16, float16"),
        (torch.float32, 64, 8, None, r"^mini_batch_size: .* got 8"),
        (torch.bfloat16, 64, 48, None, r"^mini_batch_size: .* got 48"),
        (torch.float32, 64, 128, None, r"^mini_batch_size: .* got 128"),
        (torch.float16, 256, 16, None, r"^q: .* head dims up to 128, got 256"),
        (torch.float32, 64, 16, 200, r"^W1: .* divisible by 16, got 200"),
    ],
)
def test_triton_unsupported_names_the_reason(dtype, d, b, m, reason):
    assert re.match(reason, kernels_api.triton_unsupported(dtype, d, b, m))


def test_triton_supported_inputs():
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for d in (8, 16, 32, 64, 96, 128):
            for b in (16, 32, 64):
                for m in (None, 4 * d if d % 4 == 0 else 48):
                    assert kernels_api.triton_unsupported(dtype, d, b, m) is None
    # one decode step without gradient has no mini-batch tiles: any b
    assert kernels_api.triton_unsupported(torch.float32, 64, None, 256) is None


def test_triton_unsupported_before_ampere():
    """GPUs older than the ones the kernels are compiled and checked for (sm_80 on) are
    refused, with the reason; the checked ones and newer take every input the kernels take
    (sm_100: not compiled here, but not refused)."""
    reason = kernels_api.triton_unsupported(torch.float16, 64, 16, None, (7, 5))
    assert reason == (
        "the Triton kernels are compiled and checked for sm_80 and newer GPUs (shared memory, "
        "tensor-core products); this one is sm_75"
    )
    for capability in (None, (8, 0), (8, 6), (8, 9), (9, 0), (10, 0)):
        assert kernels_api.triton_unsupported(torch.float32, 128, 64, 512, capability) is None


def test_triton_refuses_the_launch_seen_failing_on_hopper():
    """TTT-MLP in bf16/fp16 at d > 64, b = 64 read shared memory out of bounds on an H200:
    refused there (the dual form runs it under impl="auto"); fp32, TTT-Linear, smaller
    blocks and other GPUs are not."""
    for dtype in (torch.bfloat16, torch.float16):
        reason = kernels_api.triton_unsupported(dtype, 128, 64, 512, (9, 0))
        assert reason.startswith("TTT-MLP with 16-bit inputs at head dims over 64")
        assert kernels_api.triton_unsupported(dtype, 96, 64, 384, (9, 0)) == reason
    for args in [
        (torch.float32, 128, 64, 512, (9, 0)),
        (torch.bfloat16, 128, 64, None, (9, 0)),
        (torch.bfloat16, 128, 32, 512, (9, 0)),
        (torch.bfloat16, 64, 64, 256, (9, 0)),
        (torch.bfloat16, 128, 64, 512, (8, 0)),
        (torch.bfloat16, 128, 64, 512, None),
    ]:
        assert kernels_api.triton_unsupported(*args) is None, args


def test_auto_falls_back_to_pytorch_with_one_warning_per_reason(monkeypatch):
    monkeypatch.setattr(kernels_api, "_warned", set())
    assert kernels_api.auto_impl(False, "why") == "dual"  # CPU: no warning
    assert kernels_api.auto_impl(True, None) == "triton"
    with pytest.warns(UserWarning, match="impl='auto' on CUDA runs PyTorch here: why"):
        assert kernels_api.auto_impl(True, "why") == "dual"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels_api.auto_impl(True, "why") == "dual"  # said once
        assert kernels_api.decode_backend("auto", True, False, "why") == "torch"
    with pytest.warns(UserWarning, match="because"):
        assert kernels_api.decode_backend("auto", True, False, "because") == "torch"
    assert kernels_api.decode_backend("auto", True, False, None) == "triton"
    assert kernels_api.decode_backend("triton", True, True, None) == "triton"


def narrow_hidden(inp: TTTInputs, m: int) -> TTTInputs:
    """TTT-MLP inputs with the hidden width cut to ``m``."""
    (w1, w2), (c1, c2) = inp.weights, inp.biases
    return dataclasses.replace(inp, weights=(w1[..., :m], w2[:, :m]), biases=(c1[:, :m], c2))


@pytest.mark.parametrize(
    "kind, dtype, b, m, reason",
    [
        ("linear", torch.float64, 16, None, "q: the Triton kernels take"),
        ("linear", torch.float32, 8, None, "mini_batch_size: "),
        ("mlp", torch.float32, 16, 40, "W1: "),
        ("mlp", torch.float32, 16, None, None),
    ],
)
def test_auto_asks_why_triton_cannot_take_the_inputs(monkeypatch, kind, dtype, b, m, reason):
    """``impl="auto"`` hands ``auto_impl`` the reason for these very inputs (None when the
    kernels take them) and runs what it returns."""
    seen = []

    def spy(is_cuda, unsupported):
        seen.append((is_cuda, unsupported))
        return "dual"

    monkeypatch.setattr(kernels_api, "auto_impl", spy)
    inp = random_ttt_inputs(kind, B=1, T=b + 1, H=1, d=16, b=b, dtype=dtype, seed=0)
    run_ttt(kind, narrow_hidden(inp, m) if m else inp, b)
    assert len(seen) == 1 and seen[0][0] is False
    assert seen[0][1] is None if reason is None else seen[0][1].startswith(reason)


@pytest.mark.parametrize("kind, position", [("linear", 5), ("linear", 15), ("mlp", 15)])
def test_triton_decode_with_gradient_goes_through_the_scan(kind, position):
    """Rollout training decodes one token per call with gradients: ``impl="triton"`` runs
    the Triton scan over the token (the decode kernel has no backward) and equals the
    PyTorch step on the output, the new state and every gradient, through a commit."""
    b = 16
    inp = random_ttt_inputs(kind, B=2, T=position + 1, H=2, d=16, b=b, seed=position)
    _, start = run_ttt(kind, part(inp, 0, position), b, output_final_state=True)
    res = {}
    for impl in ("dual", "triton"):
        x = part(inp, position, position + 1).requires_grad_()
        vals = [t.detach().clone().requires_grad_() for t in state_tensors(start).values()]
        L = start.num_layers
        state = TTTState(
            tuple(vals[:L]),
            tuple(vals[L : 2 * L]),
            tuple(vals[2 * L : 3 * L]),
            tuple(vals[3 * L :]),
            position,
        )
        o, new = ttt_decode(*token(x, 0), state, mini_batch_size=b, impl=impl)
        grads = torch.autograd.grad(
            probe_loss(o, new), [*x.tensors()[:5], *x.tensors()[-2:], *vals]
        )
        res[impl] = (o, new, grads)
    assert res["triton"][1].position == (position + 1) % b
    assert_close("o", res["dual"][0], res["triton"][0], 2e-5)
    for name, a in state_tensors(res["dual"][1]).items():
        assert_close(f"new {name}", a, state_tensors(res["triton"][1])[name], 2e-5)
    for i, (a, c) in enumerate(zip(res["dual"][2], res["triton"][2])):
        assert_close(f"grad {i}", a, c, 2e-5)


def test_triton_kernels_are_custom_ops(monkeypatch):
    """``torch.ops.ttt_video.triton_scan`` and ``triton_decode`` pass
    ``torch.library.opcheck`` (schema, fake tensors, autograd registration, AOT dispatch) on
    the arguments ``ttt_triton`` / ``ttt_decode`` give them."""
    calls = []
    monkeypatch.setattr(scan, "triton_scan", lambda *a: calls.append(a) or op(*a))
    op = torch.ops.ttt_video.triton_scan.default
    inp = random_ttt_inputs("linear", B=1, T=20, H=2, d=16, b=16, seed=0)
    run_ttt("linear", inp, 16, impl="triton")
    args = list(calls[0])
    args[0] = args[0].requires_grad_()
    args[10] = [t.requires_grad_() for t in args[10]]  # the initial state
    result = torch.library.opcheck(op, tuple(args))
    assert set(result.values()) == {"SUCCESS"}, result
    state = initial_state_of(inp)
    flat = [*state.weights, *state.biases, *state.grad_weights, *state.grad_biases]
    decode = (*token(inp, 0), [t.contiguous() for t in flat], 0, 16)
    result = torch.library.opcheck(torch.ops.ttt_video.triton_decode.default, decode)
    assert set(result.values()) == {"SUCCESS"}, result


def test_triton_path_compiles_and_exports_whole():
    """``torch.compile(fullgraph=True)`` traces ``ttt_linear(impl="triton")`` forward and
    backward without a break and equals eager; ``torch.export`` keeps the custom op."""
    inp = random_ttt_inputs("linear", B=1, T=20, H=2, d=16, b=16, seed=0).requires_grad_()

    def layer(q, k, v, lam):
        x = dataclasses.replace(inp, q=q, k=k, v=v, lam=lam)
        return run_ttt("linear", x, 16, impl="triton")

    views = (inp.q, inp.k, inp.v, inp.lam)
    eager = layer(*views)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)(*views)
    assert torch.equal(eager, compiled)
    grads = [torch.autograd.grad(o.square().sum(), views) for o in (eager, compiled)]
    for a, c in zip(*grads):
        assert torch.equal(a, c)

    frozen = random_ttt_inputs("linear", B=1, T=20, H=2, d=16, b=16, seed=0)  # no grad

    class Layer(torch.nn.Module):
        def forward(self, q, k, v, lam):
            x = dataclasses.replace(frozen, q=q, k=k, v=v, lam=lam)
            return run_ttt("linear", x, 16, impl="triton")

    program = torch.export.export(Layer(), tuple(t.detach() for t in views))
    ops = {str(n.target) for n in program.graph.nodes}
    assert "ttt_video.triton_scan.default" in ops
    assert torch.equal(program.module()(*views), eager.detach())
