"""``keep_inner_norm=True``: at every mini-batch commit each inner layer's ``(W, b)`` is scaled
back to the norm it had before the commit (kernels/README.md section 15).

The chain of trust of the other kernel tests, with the option on: the dual form (explicit
backward) equals the naive form (autograd through the rescaling) on outputs, final states and
every gradient; a split stream and prefill + decode equal one pass; the norms stay those of
the initial weights; the Triton kernels refuse it (``impl="triton"``) or are skipped
(``impl="auto"``)."""

import dataclasses
import warnings

import pytest
import torch

from ttt_video.kernels import TTTState, api, initial_state, ttt_decode
from ttt_video.testing import TTTInputs, assert_close, random_ttt_inputs, run_ttt

KINDS = ["linear", "mlp"]
CAUSAL = pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])


def flat(st: TTTState) -> list[torch.Tensor]:
    return [*st.weights, *st.biases, *st.grad_weights, *st.grad_biases]


def from_flat(vals: list[torch.Tensor], position: int) -> TTTState:
    L = len(vals) // 4
    return TTTState(*(tuple(vals[i * L : (i + 1) * L]) for i in range(4)), position)


def probe_loss(o: torch.Tensor, st: TTTState) -> torch.Tensor:
    """A scalar that touches every output element and every final-state tensor."""
    loss = (o * o.detach().sin()).sum()
    return loss + sum((t * t.detach().cos()).sum() for t in flat(st))


def part(inp: TTTInputs, start: int, stop: int) -> TTTInputs:
    """The tokens ``start:stop`` of a stream (parameters shared)."""
    cut = {f: getattr(inp, f)[:, start:stop] for f in ("q", "k", "v", "lam")}
    return dataclasses.replace(inp, **cut)


def pair_norms(weights, biases) -> torch.Tensor:
    """``||(W_l, b_l)||`` per inner layer and leading index: ``[L, ...]``."""
    return torch.stack(
        [(w.square().sum((-2, -1)) + c.square().sum(-1)).sqrt() for w, c in zip(weights, biases)]
    )


def results(kind, inp, b, impl, causal=True, state=None, keep=True):
    """Output, final state and the gradients of every input (and of ``state``'s tensors)."""
    kw = {"save_every": 2} if impl == "dual" else {}
    o, st = run_ttt(
        kind, inp, b, causal=causal, impl=impl, initial_state=state, output_final_state=True,
        keep_inner_norm=keep, **kw,
    )  # fmt: skip
    leaves = inp.tensors() + ([] if state is None else flat(state))
    grads = torch.autograd.grad(probe_loss(o, st), leaves, allow_unused=True)
    return [o, *flat(st)], grads


def check_same(ref, out, tol):
    (vals1, g1), (vals2, g2) = ref, out
    for i, (a, c) in enumerate(zip(vals1, vals2)):
        assert_close(f"output/state {i}", a, c, tol)
    for i, (a, c) in enumerate(zip(g1, g2)):
        if a is None:  # tau does not enter the non-causal form
            assert c is None or not c.abs().any(), i
            continue
        assert_close(f"grad {i}", a, c, tol)


@pytest.mark.parametrize("kind", KINDS)
@CAUSAL
@pytest.mark.parametrize("T", [8, 37])
def test_dual_matches_naive(kind, causal, T):
    """Several commits and a partial last mini-batch (T = 37, b = 8) or exactly one commit."""
    inp = random_ttt_inputs(kind, B=2, T=T, H=2, d=8, b=8, dtype=torch.float64, seed=T)
    inp.requires_grad_()
    ref = results(kind, inp, 8, "naive", causal)
    check_same(ref, results(kind, inp, 8, "dual", causal), 1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_dual_matches_naive_from_a_state_mid_minibatch(kind):
    """A stream resumed at position 5 with an accumulated gradient: gradients reach the
    carried weights and ``Gacc`` through the rescaled commits too."""
    b = 8
    prefix = random_ttt_inputs(kind, B=2, T=13, H=2, d=8, b=b, dtype=torch.float64, seed=4)
    _, first = run_ttt(kind, prefix, b, output_final_state=True, keep_inner_norm=True)
    assert first.position == 5
    inp = random_ttt_inputs(kind, B=2, T=21, H=2, d=8, b=b, dtype=torch.float64, seed=3)
    inp.requires_grad_()
    out = {}
    for impl in ("naive", "dual"):
        leaves = [t.detach().clone().requires_grad_() for t in flat(first)]
        out[impl] = results(kind, inp, b, impl, state=from_flat(leaves, first.position))
    check_same(out["naive"], out["dual"], 1e-10)


@pytest.mark.parametrize("kind", KINDS)
@CAUSAL
def test_gradcheck_custom_backward(kind, causal):
    """Finite differences of the dual form through two rescaled commits."""
    b = 4
    inp = random_ttt_inputs(kind, B=1, T=9, H=1, d=4, b=b, dtype=torch.float64, seed=11)
    inp.requires_grad_()
    tensors = inp.tensors() if causal else [t for t in inp.tensors() if t is not inp.tau]
    L = len(inp.weights)

    def fn(*xs):
        it = iter(xs)
        fields = {f: next(it) for f in ("q", "k", "v", "lam")}
        tau = next(it) if causal else inp.tau.detach()
        ws, bs = tuple(next(it) for _ in range(L)), tuple(next(it) for _ in range(L))
        x = TTTInputs(
            **fields, tau=tau, weights=ws, biases=bs, ln_weight=next(it), ln_bias=next(it)
        )
        o, st = run_ttt(
            kind, x, b, causal=causal, impl="dual", save_every=1, output_final_state=True,
            keep_inner_norm=True,
        )  # fmt: skip
        return o, *flat(st)

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "causal, cuts", [(True, (3,)), (True, (8, 21)), (True, (1, 2, 30)), (False, (8, 24))]
)
def test_split_stream_equals_one_pass(kind, causal, cuts):
    """Nothing happens between commits, so the state carried across calls cut anywhere
    (causal) or at mini-batch borders (non-causal) gives the one pass: outputs, final state
    and gradients."""
    b, T = 8, 37
    inp = random_ttt_inputs(kind, B=2, T=T, H=2, d=8, b=b, dtype=torch.float64, seed=7)
    inp.requires_grad_()
    ref = results(kind, inp, b, "dual", causal)
    state, outs = initial_state(inp.weights, inp.biases, 2), []
    bounds = (0, *cuts, T)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        o, state = run_ttt(
            kind, part(inp, start, stop), b, causal=causal, impl="dual", initial_state=state,
            output_final_state=True, keep_inner_norm=True,
        )  # fmt: skip
        outs.append(o)
    o = torch.cat(outs, 1)
    grads = torch.autograd.grad(probe_loss(o, state), inp.tensors(), allow_unused=True)
    assert state.position == T % b
    check_same(ref, ([o, *flat(state)], grads), 1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prefill", [0, 5, 8, 19])
def test_prefill_then_decode_equals_one_pass(kind, prefill):
    """Decode steps after a prefill of every kind (none, mid-mini-batch, at a border) go
    through two rescaled commits and end mid-mini-batch, as one pass does."""
    b, T = 8, 29
    inp = random_ttt_inputs(kind, B=2, T=T, H=2, d=8, b=b, dtype=torch.float64, seed=prefill)
    o_ref, s_ref = run_ttt(kind, inp, b, output_final_state=True, keep_inner_norm=True)
    state, outs = initial_state(inp.weights, inp.biases, 2), []
    if prefill:
        o, state = run_ttt(
            kind, part(inp, 0, prefill), b, initial_state=state, output_final_state=True,
            keep_inner_norm=True,
        )  # fmt: skip
        outs.append(o)
    for t in range(prefill, T):
        x = part(inp, t, t + 1)
        o, state = ttt_decode(
            x.q, x.k, x.v, x.lam, x.tau, x.ln_weight, x.ln_bias, state, mini_batch_size=b,
            keep_inner_norm=True,
        )  # fmt: skip
        outs.append(o)
    assert_close("o", o_ref, torch.cat(outs, 1), 1e-12)
    assert state.position == s_ref.position
    for i, (a, c) in enumerate(zip(flat(s_ref), flat(state))):
        assert_close(f"state {i}", a, c, 1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", ["naive", "dual", "decode"])
def test_norms_stay_those_of_the_initial_weights(kind, form):
    """After many commits every ``(W_l, b_l)`` of every stream and head has the norm of its
    initial value (to 1e-6 relative); the plain update moves some by more than 1%."""
    b, T = 4, {"naive": 40, "dual": 800, "decode": 200}[form]
    inp = random_ttt_inputs(kind, B=2, T=T, H=2, d=8, b=b, dtype=torch.float64, seed=1)
    start = initial_state(inp.weights, inp.biases, 2)
    norm0 = pair_norms(start.weights, start.biases)
    for keep in (False, True):
        if form == "decode":
            state = start
            for t in range(T):
                x = part(inp, t, t + 1)
                _, state = ttt_decode(
                    x.q, x.k, x.v, x.lam, x.tau, x.ln_weight, x.ln_bias, state,
                    mini_batch_size=b, keep_inner_norm=keep,
                )  # fmt: skip
        else:
            _, state = run_ttt(
                kind, inp, b, impl=form, output_final_state=True, keep_inner_norm=keep
            )
        assert state.position == 0  # the last token committed
        change = (pair_norms(state.weights, state.biases) / norm0 - 1).abs()
        if keep:
            assert change.max() < 1e-6, change
        else:
            assert change.max() > 1e-2, change


@pytest.mark.parametrize("kind", KINDS)
def test_float32_norms_do_not_drift(kind):
    """In float32 the kept norm is what rounding leaves, not a bias that adds up: after 1,000
    commits within 5e-6 (measured: 1.3e-6; with each matrix's squares summed in float32, as
    first written, TTT-MLP's had drifted by 2.2e-5, 7e-5 after 3,000 commits)."""
    b = 4
    inp = random_ttt_inputs(kind, B=2, T=4 * 1000, H=2, d=16, b=b, dtype=torch.float32, seed=0)
    _, state = run_ttt(kind, inp, b, output_final_state=True, keep_inner_norm=True)
    start = initial_state(inp.weights, inp.biases, 2)
    norm0 = pair_norms([w.double() for w in start.weights], [c.double() for c in start.biases])
    norm = pair_norms([w.double() for w in state.weights], [c.double() for c in state.biases])
    assert (norm / norm0 - 1).abs().max() < 5e-6


def test_first_commit_only_rescales():
    """After one mini-batch the kept weights are the plain update times ``||(W, b)|| /
    ||(W', b')||`` per stream and head; the outputs, read before the commit, are the same."""
    inp = random_ttt_inputs("mlp", B=2, T=8, H=2, d=8, b=8, dtype=torch.float64, seed=2)
    o_plain, plain = run_ttt("mlp", inp, 8, output_final_state=True)
    o_kept, kept = run_ttt("mlp", inp, 8, output_final_state=True, keep_inner_norm=True)
    assert torch.equal(o_plain, o_kept)
    start = initial_state(inp.weights, inp.biases, 2)
    r = pair_norms(start.weights, start.biases) / pair_norms(plain.weights, plain.biases)
    for l in range(2):
        assert_close("W", r[l, ..., None, None] * plain.weights[l], kept.weights[l], 1e-14)
        assert_close("b", r[l, ..., None] * plain.biases[l], kept.biases[l], 1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_packed_sequences_equal_each_alone(kind):
    """``cu_seqlens`` with the option: each sequence as if run alone."""
    b = 4
    inp = random_ttt_inputs(kind, B=1, T=23, H=2, d=8, b=b, dtype=torch.float64, seed=5)
    cu = torch.tensor([0, 9, 23])
    o = run_ttt(kind, inp, b, cu_seqlens=cu, keep_inner_norm=True)
    for t0, t1 in ((0, 9), (9, 23)):
        alone = run_ttt(kind, part(inp, t0, t1), b, keep_inner_norm=True)
        assert_close("o", alone, o[:, t0:t1], 1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_op_path_equals_eager_path(request, kind):
    """The custom op ``dual_scan`` (what ``torch.compile`` sees) with the option gives the
    eager path's outputs, final state and gradients bit for bit."""
    inp = random_ttt_inputs(kind, B=2, T=35, H=2, d=8, b=8, seed=1).requires_grad_()
    eager = results(kind, inp, 8, "dual")
    request.getfixturevalue("through_the_op")
    traced = results(kind, inp, 8, "dual")
    for a, c in zip(eager[0] + list(eager[1]), traced[0] + list(traced[1])):
        assert torch.equal(a, c)


def test_dual_scan_op_passes_opcheck():
    """Schema, fake implementation and autograd registration of ``dual_scan`` with
    ``keep_norm=True``."""
    g = torch.Generator().manual_seed(0)
    R, N, b, d = 2, 3, 4, 8

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).requires_grad_()

    state = [rnd(R, d, d, scale=d**-0.5), rnd(R, d, scale=0.1)]
    state += [rnd(R, d, d, scale=0.01), rnd(R, d, scale=0.01)]
    lam = (torch.rand(R, N, b, generator=g) * 0.1).requires_grad_()
    tau = (1.0 / torch.arange(1, b + 1)).requires_grad_()
    blocks = [rnd(R, N, b, d) for _ in range(3)]
    ln = [(1.0 + rnd(R, 1, d, scale=0.1)).detach().requires_grad_(), rnd(R, 1, d, scale=0.1)]
    args = (*blocks, lam, tau, *ln, state, True, True, 2, True, 0)
    result = torch.library.opcheck(torch.ops.ttt_video.dual_scan.default, args)
    assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("kind", KINDS)
def test_triton_refuses_and_auto_falls_back(monkeypatch, kind):
    """The Triton kernels do not rescale: ``impl="triton"`` raises, ``impl="auto"`` gives
    ``auto_impl`` the reason (on CUDA: the dual form, with a warning once)."""
    inp = random_ttt_inputs(kind, B=1, T=17, H=1, d=16, b=16, seed=0)
    with pytest.raises(ValueError, match="keep_inner_norm=True is not implemented by the Triton"):
        run_ttt(kind, inp, 16, impl="triton", keep_inner_norm=True)
    x = part(inp, 0, 1)
    start = initial_state(inp.weights, inp.biases, 1)
    token = (x.q, x.k, x.v, x.lam, x.tau, x.ln_weight, x.ln_bias, start)
    with pytest.raises(ValueError, match="keep_inner_norm=True is not implemented by the Triton"):
        ttt_decode(*token, mini_batch_size=16, impl="triton", keep_inner_norm=True)

    seen = []
    monkeypatch.setattr(api, "auto_impl", lambda is_cuda, why: seen.append(why) or "dual")
    run_ttt(kind, inp, 16, keep_inner_norm=True)
    assert seen == [api.KEEP_NORM_UNSUPPORTED]
    decode_seen = []

    def decode_spy(impl, is_cuda, needs_grad, why=None):
        decode_seen.append(why)
        return "torch"

    monkeypatch.setattr(api, "decode_backend", decode_spy)
    ttt_decode(*token, mini_batch_size=16, keep_inner_norm=True)
    assert decode_seen == [api.KEEP_NORM_UNSUPPORTED]


def test_auto_on_cuda_warns_once_for_the_option(monkeypatch):
    monkeypatch.setattr(api, "_warned", set())
    with pytest.warns(UserWarning, match="keep_inner_norm: the Triton kernels do not rescale"):
        assert api.auto_impl(True, api.KEEP_NORM_UNSUPPORTED) == "dual"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert api.decode_backend("auto", True, False, api.KEEP_NORM_UNSUPPORTED) == "torch"


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_non_bool_is_refused(value):
    inp = random_ttt_inputs("linear", B=1, T=4, H=1, d=8, b=4, seed=0)
    with pytest.raises(ValueError, match="keep_inner_norm: expected a bool"):
        run_ttt("linear", inp, 4, keep_inner_norm=value)


def test_entry_points_trace_as_one_graph():
    """With the option, ``ttt_mlp`` (dual form, from a state mid-mini-batch) and a decode step
    that commits still trace as one graph without a break."""
    inp = random_ttt_inputs("mlp", B=2, T=21, H=2, d=8, b=8, seed=2)
    start = initial_state(inp.weights, inp.biases, 2)
    state = TTTState(start.weights, start.biases, start.grad_weights, start.grad_biases, 7)

    def both(inp, state):
        o, st = run_ttt(
            "mlp", inp, 8, impl="dual", initial_state=state, output_final_state=True,
            keep_inner_norm=True,
        )  # fmt: skip
        x = (inp.q[:, :1], inp.k[:, :1], inp.v[:, :1], inp.lam[:, :1], inp.tau)
        o1, st1 = ttt_decode(
            *x, inp.ln_weight, inp.ln_bias, state, mini_batch_size=8, impl="dual",
            keep_inner_norm=True,
        )  # fmt: skip
        return [o, o1, *flat(st), *flat(st1)]

    explained = torch._dynamo.explain(both)(inp, state)
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]
    assert explained.graph_count == 1
