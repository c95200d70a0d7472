"""Bad arguments raise a ValueError (TypeError for a wrong dtype) naming the argument."""

import dataclasses

import pytest
import torch

from ttt_video.kernels import IMPLS, initial_state, ttt_decode, ttt_linear, ttt_mlp
from ttt_video.testing import random_ttt_inputs, run_ttt


@pytest.fixture
def inp():
    return random_ttt_inputs("linear", B=2, T=10, H=2, d=8, b=4, seed=0)


def call(inp, **overrides):
    args = dict(
        q=inp.q,
        k=inp.k,
        v=inp.v,
        lam=inp.lam,
        tau=inp.tau,
        W1=inp.weights[0],
        b1=inp.biases[0],
        ln_weight=inp.ln_weight,
        ln_bias=inp.ln_bias,
    )
    kw = {"mini_batch_size": 4}
    for key, value in overrides.items():
        (args if key in args else kw)[key] = value
    return ttt_linear(**args, **kw)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (lambda i: {"q": i.q[0]}, r"^q: expected shape \[B, T, H, d\]"),
        (lambda i: {"k": i.k[:, :5]}, r"^k: expected shape"),
        (lambda i: {"v": i.v[..., :4]}, r"^v: expected shape"),
        (lambda i: {"lam": i.lam[..., None]}, r"^lam: expected shape"),
        (lambda i: {"tau": i.tau[:3]}, r"^tau: expected shape \[mini_batch_size\]"),
        (lambda i: {"ln_weight": torch.ones(2, 4)}, r"^ln_weight: .*head dim of q is 8"),
        (lambda i: {"W1": torch.zeros(2, 4, 4)}, r"^W1: expected shape .*head dim d=8"),
        (lambda i: {"W1": torch.zeros(3, 2, 8, 8)}, r"^W1: expected shape .*batch dimension"),
        (lambda i: {"b1": torch.zeros(2, 5)}, r"^b1: expected shape"),
        (lambda i: {"mini_batch_size": 0}, r"^mini_batch_size: expected a positive int"),
        (lambda i: {"mini_batch_size": 2.5}, r"^mini_batch_size: expected a positive int"),
        (lambda i: {"impl": "cuda"}, r"^impl: expected one of"),
        (lambda i: {"save_every": 0}, r"^save_every: expected a positive int"),
        (
            lambda i: {"q": i.q[:, :0], "k": i.k[:, :0], "v": i.v[:, :0], "lam": i.lam[:, :0]},
            r"^q: the stream is empty",
        ),
    ],
)
def test_bad_arguments_name_the_argument(inp, overrides, match):
    with pytest.raises(ValueError, match=match):
        call(inp, **overrides(inp))


@pytest.mark.parametrize("name", ["q", "k", "v", "lam", "ln_bias"])
def test_nan_detected_when_asked(inp, name):
    bad = getattr(inp, name).clone()
    bad.view(-1)[3] = float("nan")
    broken = dataclasses.replace(inp, **{name: bad})
    with pytest.raises(ValueError, match=rf"^{name}: holds NaN or inf"):
        run_ttt("linear", broken, 4, check_finite=True)
    assert torch.isnan(run_ttt("linear", broken, 4)).any()  # off by default: no sync cost


def test_state_mismatches(inp):
    _, state = run_ttt("linear", inp, 4, output_final_state=True)  # position 10 % 4 = 2
    with pytest.raises(ValueError, match="non-causal form cannot resume mid-mini-batch"):
        run_ttt("linear", inp, 4, initial_state=state, causal=False)
    with pytest.raises(ValueError, match=r"2 tokens into its mini-batch, not below mini_batch_s"):
        run_ttt("linear", dataclasses.replace(inp, tau=inp.tau[:2]), 2, initial_state=state)
    other = initial_state(inp.weights, inp.biases, batch_size=3)
    with pytest.raises(ValueError, match="initial_state: batch size 3 != B=2"):
        run_ttt("linear", inp, 4, initial_state=other)
    with pytest.raises(ValueError, match="q: decoding takes one token"):
        ttt_decode(
            inp.q,
            inp.k,
            inp.v,
            inp.lam,
            inp.tau,
            inp.ln_weight,
            inp.ln_bias,
            state,
            mini_batch_size=4,
        )


def test_missing_weights_without_state(inp):
    with pytest.raises(ValueError, match="weights and biases are required"):
        call(inp, W1=None)


def test_one_impl_vocabulary_for_every_entry_point(inp):
    """``ttt_linear`` and ``ttt_decode`` take the same names and refuse the same others."""
    assert IMPLS == ("auto", "naive", "dual", "triton")
    _, state = run_ttt("linear", inp, 4, output_final_state=True)
    step = [t[:, :1] for t in (inp.q, inp.k, inp.v, inp.lam)]
    args = (*step, inp.tau, inp.ln_weight, inp.ln_bias, state)
    outs = {impl: ttt_decode(*args, mini_batch_size=4, impl=impl)[0] for impl in ("naive", "dual")}
    assert torch.equal(outs["naive"], outs["dual"])
    choices = r"^impl: expected one of 'auto', 'naive', 'dual', 'triton', got 'torch'"
    with pytest.raises(ValueError, match=choices):
        ttt_decode(*args, mini_batch_size=4, impl="torch")
    with pytest.raises(ValueError, match=choices):
        call(inp, impl="torch")


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_weights_and_initial_state_together_are_refused(kind):
    """Weights given with ``initial_state`` used to be silently ignored."""
    inp = random_ttt_inputs(kind, B=2, T=6, H=2, d=8, b=4, seed=0)
    _, state = run_ttt(kind, inp, 4, output_final_state=True)
    fn = ttt_linear if kind == "linear" else ttt_mlp
    views = (inp.q, inp.k, inp.v, inp.lam, inp.tau)
    ln = (inp.ln_weight, inp.ln_bias)
    params = [t for pair in zip(inp.weights, inp.biases) for t in pair]
    nones = [None] * len(params)
    for i, name in enumerate(["W1", "b1", "W2", "b2"][: len(params)]):
        one = nones[:i] + [params[i]] + nones[i + 1 :]
        with pytest.raises(ValueError, match=rf"^{name}: pass None for {name} when initial_state"):
            fn(*views, *one, *ln, mini_batch_size=4, initial_state=state)
    with pytest.raises(ValueError, match=r"^W1: pass None for W1, b1"):
        fn(*views, *params, *ln, mini_batch_size=4, initial_state=state)
    fn(*views, *nones, *ln, mini_batch_size=4, initial_state=state)  # the supported call


@pytest.mark.parametrize("name", ["q", "k", "v", "lam", "tau", "W1", "b1", "ln_weight"])
def test_integer_tensors_are_refused(inp, name):
    """Integer views used to run and silently return an int64 output."""
    field = {"W1": "weights", "b1": "biases"}.get(name, name)
    value = getattr(inp, field)
    value = value[0] if isinstance(value, tuple) else value
    with pytest.raises(
        TypeError, match=rf"^{name}: expected a floating-point tensor, got torch.int64"
    ):
        call(inp, **{name: value.round().long()})


def test_integer_views_are_refused_when_decoding(inp):
    _, state = run_ttt("linear", inp, 4, output_final_state=True)
    q = inp.q[:, :1].round().long()
    step = (q, inp.k[:, :1], inp.v[:, :1], inp.lam[:, :1], inp.tau, inp.ln_weight, inp.ln_bias)
    with pytest.raises(TypeError, match=r"^q: expected a floating-point tensor"):
        ttt_decode(*step, state, mini_batch_size=4)


def test_state_with_biases_of_another_width_names_b1_when_used(inp):
    good = initial_state(inp.weights, inp.biases, batch_size=2)
    bad = dataclasses.replace(good, biases=(torch.zeros(2, 2, 5),))
    with pytest.raises(ValueError, match=r"^b1: expected shape \[\(B,\) H, 8\], got \(2, 2, 5\)"):
        run_ttt("linear", inp, 4, initial_state=bad)
