"""Bad arguments raise a ValueError naming the argument."""

import dataclasses

import pytest
import torch

from ttt_video.kernels import initial_state, ttt_decode, ttt_linear
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
    with pytest.raises(ValueError, match=r"initial_state: position 2 outside \[0, 2\)"):
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
