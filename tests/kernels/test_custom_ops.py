"""The kernels as one graph: the state chain of the dual form is the custom op
``ttt_video::dual_scan`` (backward: ``dual_scan_backward``) for ``torch.compile`` and
``torch.export``; the entry points trace without a graph break; the op computes what the
eager path computes. (The Triton ops: ``test_triton.py``, in the interpreter.)"""

import dataclasses

import pytest
import torch

from ttt_video.kernels import TTTState, dual, initial_state, ttt_decode
from ttt_video.testing import TTTInputs, random_ttt_inputs, run_ttt


def scan_inputs(layers: int, N: int, seed: int, R=3, b=4, d=8, m=16) -> tuple:
    """Tensor arguments of ``dual_scan``: blocks ``[R, N, b, *]``, ``tau``, the LN and a state
    with a non-zero accumulated gradient (as at a stream resumed mid-mini-batch)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    widths = [d, d] if layers == 1 else [d, m, d]
    pairs = list(zip(widths[:-1], widths[1:]))
    weights = [rnd(R, i, o, scale=i**-0.5) for i, o in pairs]
    biases = [rnd(R, o, scale=0.1) for _, o in pairs]
    grad_weights = [rnd(R, i, o, scale=0.01) for i, o in pairs]
    grad_biases = [rnd(R, o, scale=0.01) for _, o in pairs]
    state = weights + biases + grad_weights + grad_biases
    lam = torch.rand(R, N, b, generator=g) * 0.1
    tau = 1.0 / torch.arange(1, b + 1)
    lnw, lnb = 1.0 + rnd(R, 1, d, scale=0.1), rnd(R, 1, d, scale=0.1)
    return rnd(R, N, b, d), rnd(R, N, b, d), rnd(R, N, b, d), lam, tau, lnw, lnb, state


def test_ops_take_no_default_arguments():
    """torch 2.11's dispatcher drops the trailing arguments of a custom op that equal their
    defaults, and then wants its registered backward to return one gradient per argument
    passed: ``dual_scan``'s backward of fixed length raised "Expected the return from
    backward to be of the same structure as the inputs" (every compiled TTT model, on the
    PyTorch of a GPU image). Without defaults every call passes every argument, on every
    version."""
    import ttt_video.kernels.ops  # noqa: F401  (registers the ops)

    for name in (
        "dual_scan", "dual_scan_backward", "triton_scan", "triton_scan_backward", "triton_decode"
    ):  # fmt: skip
        schema = getattr(torch.ops.ttt_video, name).default._schema
        assert [a.name for a in schema.arguments if a.has_default_value()] == [], name


@pytest.mark.parametrize("layers", [1, 2], ids=["linear", "mlp"])
@pytest.mark.parametrize(
    "causal, commit_last, N, save_every",
    [(True, True, 5, 2), (True, False, 3, 1), (False, True, 4, 3), (True, False, 1, 16)],
)
def test_dual_scan_passes_opcheck(layers, causal, commit_last, N, save_every):
    """Schema, fake implementation (shapes, dtypes, strides), autograd registration and AOT
    dispatch (forward and backward with dynamic shapes) of ``dual_scan``, then of its
    backward op on the arguments the backward gives it."""
    *tensors, state = scan_inputs(layers, N, seed=N)
    tensors = [t.requires_grad_() for t in tensors]
    state = [t.requires_grad_() for t in state]
    args = (*tensors, state, causal, commit_last, save_every, False, 0)
    result = torch.library.opcheck(torch.ops.ttt_video.dual_scan.default, args)
    assert set(result.values()) == {"SUCCESS"}, result

    out = torch.ops.ttt_video.dual_scan.default(*args)
    L = len(state) // 4
    assert len(out) == 1 + 4 * L + 2 * L
    assert all(ck.shape[0] == -(-N // save_every) - 1 for ck in out[1 + 4 * L :])
    g = torch.Generator().manual_seed(0)
    dzbar = torch.randn(out[0].shape, generator=g)
    dfinal = [torch.randn(t.shape, generator=g) for t in out[1 : 1 + 4 * L]]
    detached = [t.detach() for t in tensors]
    back = (*detached, [t.detach() for t in state], [t.detach() for t in out[1 + 4 * L :]])
    back += (dzbar, dfinal, causal, commit_last, save_every, False, 0)
    result = torch.library.opcheck(torch.ops.ttt_video.dual_scan_backward.default, back)
    assert set(result.values()) == {"SUCCESS"}, result


def grads_of(kind, inp, b, causal):
    """Output, final state and the gradient of every input."""
    o, st = run_ttt(kind, inp, b, causal=causal, impl="dual", save_every=2, output_final_state=True)
    loss = (o * o.detach().sin()).sum() + sum((t * t.detach().cos()).sum() for t in flat(st))
    grads = torch.autograd.grad(loss, inp.tensors(), allow_unused=True)
    return [o, *flat(st), *(g for g in grads if g is not None)]


def flat(st: TTTState) -> list[torch.Tensor]:
    return [*st.weights, *st.biases, *st.grad_weights, *st.grad_biases]


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_op_path_equals_eager_path(request, kind, causal):
    """While tracing, ``ttt_dual`` calls the custom op; in eager mode an autograd.Function
    around the same functions. Sent through the op (uncompiled) in eager mode, every output,
    final state and gradient is the same, bit for bit (35 tokens: partial last mini-batch)."""
    inp = random_ttt_inputs(kind, B=2, T=35, H=2, d=8, b=8, seed=1).requires_grad_()
    eager = grads_of(kind, inp, 8, causal)
    request.getfixturevalue("through_the_op")
    traced = grads_of(kind, inp, 8, causal)
    assert len(eager) == len(traced)
    for a, c in zip(eager, traced):
        assert torch.equal(a, c)


def entry_points(lin, mlp, state_lin, state_mlp):
    """Every dual-form entry point once: ``ttt_linear`` and ``ttt_mlp`` causal (from a state
    mid-mini-batch) and not, with final states, and ``ttt_decode`` of both."""
    outs = []
    for inp, kind, state in ((lin, "linear", state_lin), (mlp, "mlp", state_mlp)):
        o, st = run_ttt(kind, inp, 8, impl="dual", initial_state=state, output_final_state=True)
        outs += [o, *flat(st)]
        o, st = run_ttt(kind, inp, 8, impl="dual", causal=False, output_final_state=True)
        outs += [o, *flat(st)]
        x = (inp.q[:, :1], inp.k[:, :1], inp.v[:, :1], inp.lam[:, :1], inp.tau)
        o, st = ttt_decode(*x, inp.ln_weight, inp.ln_bias, state, mini_batch_size=8, impl="dual")
        outs += [o, *flat(st)]
    return outs


def resumed(inp) -> TTTState:
    """A state at position 3 with a non-zero accumulated gradient."""
    start = initial_state(inp.weights, inp.biases, inp.q.shape[0])

    def acc(ts):
        return tuple(torch.full_like(t, 0.01) for t in ts)

    return TTTState(start.weights, start.biases, acc(start.grad_weights), acc(start.grad_biases), 3)


def test_entry_points_trace_as_one_graph():
    """``torch._dynamo.explain`` of ``ttt_linear``, ``ttt_mlp`` (dual form, causal from a
    resumed state and not, final states) and ``ttt_decode``: one graph, no break (the
    commit used to read ``tau[-1]`` as a Python float: 33 breaks here)."""
    lin = random_ttt_inputs("linear", B=2, T=21, H=2, d=8, b=8, seed=2)
    mlp = random_ttt_inputs("mlp", B=2, T=21, H=2, d=8, b=8, seed=3)
    explained = torch._dynamo.explain(entry_points)(lin, mlp, resumed(lin), resumed(mlp))
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]
    assert explained.graph_count == 1


def compiled_chain_spy(monkeypatch) -> list:
    """The ``graph_minibatches`` of every ``dual.run_chain`` call from now on, and a clean
    record of the functions ``dual`` compiles."""
    asked = []
    run_chain = dual.run_chain

    def spy(fn, graph_minibatches, *args):
        asked.append(graph_minibatches)
        return run_chain(fn, graph_minibatches, *args)

    monkeypatch.setattr(dual, "run_chain", spy)
    monkeypatch.setattr(dual, "_compiled_fns", {})
    return asked


def compiled_calls(monkeypatch) -> list[str]:
    """Every compiled call ``dual`` makes from now on, as ``"<function> <mini-batches>"``."""
    calls, call = [], dual._call

    def spy(fn, compiled, *args):
        if compiled:
            n = args[0].shape[1] if fn.__name__.startswith("scan") else 1
            calls.append(f"{fn.__name__} {n}")
        return call(fn, compiled, *args)

    monkeypatch.setattr(dual, "_call", spy)
    return calls


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_full_graph_forward_and_backward_equal_eager(kind, monkeypatch):
    """``fullgraph=True`` through the AOT autograd of the op (its backward op in the backward
    graph; inside, the chain compiled by inductor, ``dual.run_chain``) gives the eager
    outputs, final states and the gradients of every input (float64: to rounding). The op's
    forward and backward chains are asked to run compiled (on torch 2.11 they ran eager:
    ``is_exporting()`` read True under ``torch.compile``), and a training call's chain as one
    graph each way (its shapes come back every step): for TTT-Linear one of 6 mini-batches,
    which ran a mini-batch step at a time before (TTT-MLP: 3, whose unrolled graph compiles
    faster)."""
    asked = compiled_chain_spy(monkeypatch)
    T = 45 if kind == "linear" else 21
    inp = random_ttt_inputs(kind, B=2, T=T, H=2, d=8, b=8, dtype=torch.float64, seed=4)
    inp = inp.requires_grad_()
    L = len(inp.weights)

    def layer(q, k, v, lam, tau, lnw, lnb, *params):
        x = TTTInputs(q, k, v, lam, tau, params[:L], params[L:], lnw, lnb)
        o, st = run_ttt(kind, x, 8, impl="dual", save_every=2, output_final_state=True)
        return o, flat(st)

    leaves = inp.tensors()
    args = (*leaves[:5], inp.ln_weight, inp.ln_bias, *inp.weights, *inp.biases)
    results = []
    for fn in (layer, torch.compile(layer, backend="aot_eager", fullgraph=True)):
        o, st = fn(*args)
        loss = (o * o.detach().sin()).sum() + sum((t * t.detach().cos()).sum() for t in st)
        results.append([o, *st, *torch.autograd.grad(loss, leaves)])
    for a, c in zip(*results):
        torch.testing.assert_close(c, a, rtol=1e-10, atol=1e-12)
    # the forward chain, then the backward chain
    assert asked == [dual.WHOLE_CHAIN_MAX_MINIBATCHES_TRAINING] * 2
    assert set(dual._compiled_fns) == {dual.scan_forward, dual.scan_backward}


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize(
    "T, resume, causal, keep",
    [
        (8, False, True, False),
        (5, False, True, False),
        (5, True, True, True),
        (8, False, False, False),
    ],
    ids=["commits", "uncommitted", "resumed-keep-norm", "noncausal"],
)
def test_one_minibatch_chain_is_traced_into_the_caller(kind, T, resume, causal, keep, monkeypatch):
    """Under ``torch.compile`` a chain of one mini-batch (a video rollout's one-frame call)
    skips the op: ``scan_forward`` is traced into the caller's graph and AOT autograd
    differentiates it, so ``dual`` compiles nothing of its own (before: the op, and in it the
    chain compiled again, each way). Outputs, final states and the gradient of every input
    equal eager (float64: to rounding), from a fresh state or one resumed mid-mini-batch
    with an accumulated gradient, committing or not, with ``keep_inner_norm``."""
    asked = compiled_chain_spy(monkeypatch)
    inp = random_ttt_inputs(kind, B=2, T=T, H=2, d=8, b=8, dtype=torch.float64, seed=6)
    inp = inp.requires_grad_()
    L = len(inp.weights)

    def layer(q, k, v, lam, tau, lnw, lnb, *params):
        x = TTTInputs(q, k, v, lam, tau, params[:L], params[L:], lnw, lnb)
        state = resumed(x) if resume else None
        kwargs = dict(causal=causal, keep_inner_norm=keep, initial_state=state)
        o, st = run_ttt(kind, x, 8, impl="dual", output_final_state=True, **kwargs)
        return o, flat(st)

    leaves = inp.tensors()
    args = (*leaves[:5], inp.ln_weight, inp.ln_bias, *inp.weights, *inp.biases)
    results = []
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True, dynamic=False)
    for fn in (layer, compiled):
        o, st = fn(*args)
        loss = (o * o.detach().sin()).sum() + sum((t * t.detach().cos()).sum() for t in st)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        results.append([o, *st, *(g for g in grads if g is not None)])
    assert len(results[0]) == len(results[1])
    for a, c in zip(*results):
        torch.testing.assert_close(c, a, rtol=1e-10, atol=1e-12)
    assert asked == []
    assert dual._compiled_fns == {}


def test_inference_chain_compiles_in_segments(monkeypatch):
    """Without a gradient (a prompt, a rollout: shapes that vary from call to call) a chain
    longer than ``WHOLE_CHAIN_MAX_MINIBATCHES`` runs as compiled segments of that many
    mini-batches, so that compile time does not grow with its length (6 mini-batches: 4 and
    2; before, a compiled step per mini-batch); the outputs are the eager ones."""
    asked = compiled_chain_spy(monkeypatch)
    ran = compiled_calls(monkeypatch)
    inp = random_ttt_inputs("linear", B=2, T=45, H=2, d=8, b=8, dtype=torch.float64, seed=4)

    def layer(inp):
        return run_ttt("linear", inp, 8, impl="dual", output_final_state=True)

    with torch.no_grad():
        eager, compiled = layer(inp), torch.compile(layer, backend="aot_eager")(inp)
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-10, atol=1e-12)
    assert asked == [dual.WHOLE_CHAIN_MAX_MINIBATCHES]
    assert ran == ["scan_forward 4", "scan_forward 2"]
    assert set(dual._compiled_fns) == {dual.scan_forward}


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_export_keeps_the_op_and_the_outputs(kind, causal):
    """``torch.export`` of a module around ``ttt_linear`` / ``ttt_mlp`` with a state in and
    out: the chain is one ``dual_scan`` node and the program gives the eager outputs."""
    inp = random_ttt_inputs(kind, B=2, T=21, H=2, d=8, b=8, seed=5)
    L = len(inp.weights)

    class Layer(torch.nn.Module):
        def forward(self, q, k, v, lam, *state):
            parts = (state[:L], state[L : 2 * L], state[2 * L : 3 * L], state[3 * L :])
            start = TTTState(*parts, 0)
            x = dataclasses.replace(inp, q=q, k=k, v=v, lam=lam)
            o, st = run_ttt(
                kind, x, 8, impl="dual", causal=causal, initial_state=start,
                output_final_state=True,
            )  # fmt: skip
            return o, *flat(st)

    state = [t.contiguous() for t in flat(initial_state(inp.weights, inp.biases, 2))]
    args = (inp.q, inp.k, inp.v, inp.lam, *state)
    program = torch.export.export(Layer(), args)
    nodes = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert nodes.count("ttt_video.dual_scan.default") == 1
    for a, c in zip(Layer()(*args), program.module()(*args)):
        torch.testing.assert_close(c, a, rtol=1e-6, atol=1e-6)


# the compiled calls of a chain of 7 mini-batches in segments of 4: forward, then backward
SEGMENTS_4_3 = ["scan_forward 4", "scan_forward 3", "scan_backward 3", "scan_backward 4"]
# a backward of 6 mini-batches a step at a time: each recomputed, then each backward
STEPS_6 = ["_step 1"] * 6 + ["_step_backward 1"] * 6


@pytest.mark.parametrize(
    "layers, N, save_every, graph, keep_norm, calls",
    [
        (1, 2, 16, 4, False, ["scan_forward 2", "scan_backward 2"]),
        (2, 2, 16, 4, False, ["scan_forward 2", "scan_backward 2"]),
        (1, 6, 4, 16, False, ["scan_forward 6", "scan_backward 6"]),
        (1, 7, 2, 4, False, SEGMENTS_4_3),
        (2, 7, 2, 4, False, SEGMENTS_4_3),
        (1, 7, 2, 4, True, SEGMENTS_4_3),
        (1, 6, 8, 4, False, ["scan_forward 4", "scan_forward 2", *STEPS_6]),
    ],
    ids=[
        "whole-linear",
        "whole-mlp",
        "whole_across_checkpoints",
        "segments-linear",
        "segments-mlp",
        "segments-keep_norm",
        "segments_forward-steps_backward",
    ],
)  # fmt: skip
def test_compiled_chain_equals_eager_chain(
    layers, N, save_every, graph, keep_norm, calls, monkeypatch
):
    """Inside ``torch.compile``, the chain runs compiled by inductor (``dual.run_chain``): as
    one graph when it has at most ``graph`` mini-batches; when longer, in compiled segments
    of at most ``graph`` mini-batches, the last one shorter, with checkpoints inside segments
    and at their starts (7 mini-batches, ``save_every`` 2: segments of 4 and 3), or, for a
    backward whose ``save_every`` exceeds ``graph``, a mini-batch at a time (its forward in
    segments of 4, a divisor of 8). Forward and backward ops with ``graph_minibatches`` set
    give the eager results (0) to rounding (float64), from a resumed state (accumulated
    gradient), the last mini-batch not committing, with the checkpoints of the eager chain;
    the compiled calls are the ones expected (``calls``: function and mini-batches), and
    none fell back to eager."""
    *tensors, state = scan_inputs(layers, N=N, seed=7)
    tensors, state = [t.double() for t in tensors], [t.double() for t in state]
    flags = (True, False, save_every, keep_norm)
    results, ran = [], compiled_calls(monkeypatch)
    dual._compiled_fns.clear()
    for graph_minibatches in (0, graph):
        out = torch.ops.ttt_video.dual_scan.default(*tensors, state, *flags, graph_minibatches)
        L = len(state) // 4
        g = torch.Generator().manual_seed(1)
        dzbar = torch.randn(out[0].shape, generator=g, dtype=torch.float64)
        dfinal = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in out[1 : 1 + 4 * L]]
        back = torch.ops.ttt_video.dual_scan_backward.default(
            *tensors, state, out[1 + 4 * L :], dzbar, dfinal, *flags, graph_minibatches
        )
        results.append([*out, *back])
    assert ran == calls and not dual._fns_that_failed
    for a, c in zip(*results):
        torch.testing.assert_close(c, a, rtol=1e-10, atol=1e-12)
