"""Chain of trust: the dual form equals the primal (naive) form on outputs, final states and
every gradient, for TTT-Linear and TTT-MLP, causal and not, over head dims and lengths."""

import pytest
import torch

from ttt_video.kernels import TTTState
from ttt_video.testing import assert_close, random_ttt_inputs, run_ttt


def state_tensors(st: TTTState) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("weights", "biases", "grad_weights", "grad_biases"):
        for i, t in enumerate(getattr(st, name)):
            out[f"{name}[{i}]"] = t
    return out


def probe_loss(o: torch.Tensor, st: TTTState) -> torch.Tensor:
    """A scalar that touches every output element and every final-state tensor."""
    w = torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view(o.shape)
    loss = (o * w).sum()
    for t in state_tensors(st).values():
        loss = loss + (t * torch.cos(torch.arange(t.numel(), dtype=t.dtype)).view(t.shape)).sum()
    return loss


def outputs_and_grads(kind, inp, b, causal, impl, **kw):
    o, st = run_ttt(kind, inp, b, causal=causal, impl=impl, output_final_state=True, **kw)
    grads = torch.autograd.grad(probe_loss(o, st), inp.tensors(), allow_unused=True)
    return o, st, grads


NAMES = ["q", "k", "v", "lam", "tau"]


def grad_names(kind):
    layers = 1 if kind == "linear" else 2
    return (
        NAMES
        + [f"W{i + 1}" for i in range(layers)]
        + [f"b{i + 1}" for i in range(layers)]
        + ["ln_weight", "ln_bias"]
    )


def check_same(kind, ref, out, tol):
    (o1, s1, g1), (o2, s2, g2) = ref, out
    assert s1.position == s2.position
    assert_close("o", o1, o2, tol)
    for name, t in state_tensors(s1).items():
        assert_close(f"final {name}", t, state_tensors(s2)[name], tol)
    for name, a, c in zip(grad_names(kind), g1, g2):
        if a is None:  # tau does not enter the non-causal form
            assert c is None or not c.abs().any(), name
            continue
        assert_close(f"grad {name}", a, c, tol)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
@pytest.mark.parametrize("d", [16, 64, 96])
@pytest.mark.parametrize("T", [1, 15, 17, 100])
def test_dual_matches_naive_float64(kind, causal, d, T):
    inp = random_ttt_inputs(kind, B=2, T=T, H=2, d=d, b=16, dtype=torch.float64, seed=T + d)
    inp.requires_grad_()
    ref = outputs_and_grads(kind, inp, 16, causal, "naive")
    out = outputs_and_grads(kind, inp, 16, causal, "dual", save_every=2)
    check_same(kind, ref, out, 1e-10)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_dual_matches_naive_float32(kind, causal):
    inp = random_ttt_inputs(kind, B=2, T=50, H=3, d=32, b=16, dtype=torch.float32, seed=1)
    inp.requires_grad_()
    ref = outputs_and_grads(kind, inp, 16, causal, "naive")
    out = outputs_and_grads(kind, inp, 16, causal, "dual")
    check_same(kind, ref, out, 1e-5)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_gradient_of_initial_state_mid_minibatch(kind):
    """A stream resumed mid-mini-batch: gradients reach the carried W0 and Gacc too."""
    b = 8
    inp = random_ttt_inputs(kind, B=2, T=13, H=2, d=16, b=b, dtype=torch.float64, seed=3)
    prefix = random_ttt_inputs(kind, B=2, T=5, H=2, d=16, b=b, dtype=torch.float64, seed=4)
    _, first = run_ttt(kind, prefix, b, output_final_state=True)
    leaves = {k: v.detach().clone().requires_grad_() for k, v in state_tensors(first).items()}
    L = first.num_layers
    vals = list(leaves.values())
    start = TTTState(
        tuple(vals[:L]),
        tuple(vals[L : 2 * L]),
        tuple(vals[2 * L : 3 * L]),
        tuple(vals[3 * L :]),
        first.position,
    )
    assert start.position == 5
    results = {}
    for impl in ("naive", "dual"):
        o, st = run_ttt(kind, inp, b, impl=impl, initial_state=start, output_final_state=True)
        results[impl] = torch.autograd.grad(probe_loss(o, st), vals)
    for name, a, c in zip(leaves, results["naive"], results["dual"]):
        assert_close(f"grad initial {name}", a, c, 1e-10)


def count_steps(monkeypatch) -> list[int]:
    """Patch the dual form's one-mini-batch forward to count its calls: ``[calls]``."""
    from ttt_video.kernels import dual

    calls, step = [0], dual._step

    def counted(*args):
        calls[0] += 1
        return step(*args)

    monkeypatch.setattr(dual, "_step", counted)
    return calls


@pytest.mark.parametrize("save_every, reruns", [(16, 0), (2, 3)])
def test_short_chain_keeps_its_intermediates_for_the_backward(monkeypatch, save_every, reruns):
    """A training chain of at most ``save_every`` mini-batches (3 here) runs each mini-batch's
    forward once; a longer one runs it again in the backward, from the states it kept."""
    calls = count_steps(monkeypatch)
    inp = random_ttt_inputs("mlp", B=2, T=40, H=2, d=16, b=16, dtype=torch.float64, seed=5)
    inp.requires_grad_()
    o, st = run_ttt("mlp", inp, 16, impl="dual", output_final_state=True, save_every=save_every)
    assert calls[0] == 3
    probe_loss(o, st).backward()
    assert calls[0] == 3 + reruns


def test_dual_backward_refuses_create_graph():
    inp = random_ttt_inputs("linear", B=1, T=20, H=1, d=4, b=8, dtype=torch.float64, seed=0)
    inp.requires_grad_()
    o = run_ttt("linear", inp, 8, impl="dual")
    with pytest.raises(NotImplementedError, match="create_graph"):
        torch.autograd.grad((o**2).sum(), inp.tensors()[:3], create_graph=True)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("T, keep_norm", [(48, False), (40, False), (48, True)])
def test_kept_intermediates_match_naive_twice(kind, T, keep_norm):
    """A chain of exactly ``save_every`` mini-batches (3) keeps its intermediates: the
    gradients equal the naive form's, again on a second backward (``retain_graph``), after
    the returned final state was edited in place (it is the caller's, not the backward's)."""
    inp = random_ttt_inputs(kind, B=2, T=T, H=2, d=16, b=16, dtype=torch.float64, seed=6)
    inp.requires_grad_()
    kw = {"keep_inner_norm": keep_norm}
    o, st = run_ttt(kind, inp, 16, impl="naive", output_final_state=True, **kw)
    ref = torch.autograd.grad(probe_loss(o, st), inp.tensors(), allow_unused=True)
    o, st = run_ttt(kind, inp, 16, impl="dual", output_final_state=True, save_every=3, **kw)
    loss = probe_loss(o, st)
    with torch.no_grad():
        for t in st.weights + st.biases:
            t.mul_(0.5)
    for _ in range(2):
        got = torch.autograd.grad(loss, inp.tensors(), allow_unused=True, retain_graph=True)
        for name, a, c in zip(grad_names(kind), ref, got):
            if a is not None:
                assert_close(f"grad {name}", a, c, 1e-10)
