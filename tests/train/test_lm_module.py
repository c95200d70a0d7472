"""The paper's recipe pieces (schedule, weight-decay groups, TTT base_lr warm-up, step sampler)
and the per-position bands of the evaluation."""

from __future__ import annotations

import pytest

from ttt_video.apps.eval_lm import position_bands
from ttt_video.data.text.dataset import StepBatchSampler
from ttt_video.layers.ttt import TTTBase
from ttt_video.models import from_name
from ttt_video.train.lm_module import set_ttt_base_lr
from ttt_video.train.optim import lr_factor, param_groups


def test_schedule_warms_up_then_cosine_to_floor():
    total, warmup, floor = 100, 10, 1e-5 / 3e-3
    f = [lr_factor(s, total, warmup, floor) for s in range(total + 5)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:]))
    assert f[total] == pytest.approx(floor) and f[-1] == pytest.approx(floor)
    assert f[55] == pytest.approx(floor + (1 - floor) * 0.5)


def test_no_decay_on_norms_biases_embeddings():
    model = from_name("ttt_mlp_debug")
    decay, no_decay = (g["params"] for g in param_groups(model, 0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay}
    assert "embed.weight" in undecayed
    assert all(
        "norm" in n or n.endswith(("b1", "b2", "bias")) or n == "embed.weight" or "tau" in n
        for n in undecayed
    )
    assert any(names[id(p)].endswith("W1") for p in decay)
    assert len(decay) + len(no_decay) == len(list(model.parameters()))


def test_ttt_base_lr_warmup_reaches_the_configured_value():
    model = from_name("ttt_mlp_debug")
    layers = [m for m in model.modules() if isinstance(m, TTTBase)]
    assert set_ttt_base_lr(model, 0.01, 0.0) == pytest.approx(0.01)
    assert set_ttt_base_lr(model, 0.01, 0.5) == pytest.approx(0.055)
    set_ttt_base_lr(model, 0.01, 3.0)
    assert all(m.base_lr == pytest.approx(0.1) for m in layers)
    assert set_ttt_base_lr(from_name("attention_debug"), 0.01, 0.5) is None


def test_step_sampler_splits_global_batches_across_ranks():
    one = StepBatchSampler(10, 4, 1, 0, seed=3)
    two = [StepBatchSampler(10, 2, 2, r, seed=3) for r in range(2)]
    for k in range(6):  # crosses two passes over the data
        assert one.batch(k) == two[0].batch(k) + two[1].batch(k)
    first_pass = [i for k in range(2) for i in one.batch(k)] + one.batch(2)[:2]
    assert sorted(first_pass) == list(range(10))
    resumed = StepBatchSampler(10, 4, 1, 0, seed=3, start=4)
    assert next(iter(resumed)) == one.batch(4)


def test_position_bands_double_and_cover_the_block():
    assert position_bands(1) == [(0, 1)]
    assert position_bands(6) == [(0, 1), (1, 2), (2, 4), (4, 6)]
    bands = position_bands(2048)
    assert bands[-1] == (1024, 2048) and len(bands) == 12
    assert all(a == b for (_, a), (b, _) in zip(bands, bands[1:]))
