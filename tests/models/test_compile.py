"""``torch.compile`` and ``torch.export`` over the models: a forward is one graph (no graph
break) for a prefill, a decode step and a video chunk with and without state; a stream fed
call by call compiles a bounded number of times (not once per call), also when the inner
learning rate is warmed up; an exported forward equals the eager one; the ``compile`` config
field is honoured by the Lightning modules."""

import lightning as L
import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.testing import CompileCounter
from torch.utils._pytree import tree_leaves

from ttt_video.models import config_from_name, from_name
from ttt_video.models.compiling import compile_model
from ttt_video.train.config import OptimConfig
from ttt_video.train.lm_module import LMModule, set_ttt_base_lr
from ttt_video.train.video_module import VideoPredictModule


@pytest.fixture(autouse=True)
def fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


def lm(name="ttt_linear_debug", train=False, **overrides):
    torch.manual_seed(0)
    return from_name(name, **overrides).train(train)


def video(name="video_ttt_linear_debug", train=False):
    torch.manual_seed(0)
    return from_name(name, motion_input=True).train(train)


def tokens(T, B=2, seed=1):
    return torch.randint(0, 257, (B, T), generator=torch.Generator().manual_seed(seed))


def frames(F, B=2, seed=1):
    return torch.rand(B, F, 1, 64, 64, generator=torch.Generator().manual_seed(seed))


def lm_call(name, decode, **overrides):
    """(model, args): a prefill of 20 tokens (training mode), or one decode step after 19."""
    if not decode:
        return lm(name, train=True, **overrides), (tokens(20),)
    model = lm(name, **overrides)
    with torch.no_grad():
        _, state = model(tokens(19))
    return model, (tokens(1, seed=2), state)


def video_call(with_state):
    """(model, args): a 2-frame chunk at the stream start, or one frame after it (training)."""
    model = video(train=True)
    if not with_state:
        return model, (frames(2),)
    return model, (frames(1, seed=2), model(frames(2)).state)


CALLS = {
    "lm_prefill": lambda: lm_call("ttt_linear_debug", decode=False),
    "lm_mlp_prefill": lambda: lm_call("ttt_mlp_debug", decode=False),
    "lm_decode": lambda: lm_call("ttt_linear_debug", decode=True),
    "lm_window_attention_prefill": lambda: lm_call("attention_debug", False, attention_window=8),
    "lm_window_attention_decode": lambda: lm_call("attention_debug", True, attention_window=8),
    "video": lambda: video_call(with_state=False),
    "video_with_state": lambda: video_call(with_state=True),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_forward_is_one_graph(call):
    model, args = CALLS[call]()
    explained = dynamo.explain(model)(*args)
    reasons = [r.reason.splitlines()[0] for r in explained.break_reasons]
    assert explained.graph_break_count == 0, reasons
    assert explained.graph_count == 1


def test_a_video_stream_compiles_twice_not_once_per_frame():
    counter = CompileCounter()
    model = video()
    compiled = torch.compile(model, backend=counter)
    x = frames(7)
    with torch.no_grad():
        out = compiled(x[:, :2])
        for t in range(2, 7):
            out = compiled(x[:, t : t + 1], out.state)
    assert counter.frame_count <= 2  # the first chunk, then every later frame


def test_decoding_compiles_a_bounded_number_of_times():
    counter = CompileCounter()
    model = lm()
    compiled = torch.compile(model, backend=counter)
    ids = tokens(40)
    with torch.no_grad():
        _, state = compiled(ids[:, :19])
        for t in range(19, 40):  # 21 steps, through a mini-batch border (b = 16)
            _, state = compiled(ids[:, t : t + 1], state)
    assert counter.frame_count <= 4


def test_warming_up_the_inner_learning_rate_does_not_recompile():
    counter = CompileCounter()
    model = lm(train=True)
    compiled = torch.compile(model, backend=counter)
    ids = tokens(20)
    outputs = []
    for fraction in (0.0, 0.5, 1.0):
        set_ttt_base_lr(model, 0.1, fraction)
        outputs.append(compiled(ids)[0].detach())
    assert counter.frame_count == 1
    assert not torch.equal(outputs[0], outputs[1])
    eager = model(ids)[0].detach()
    torch.testing.assert_close(outputs[-1], eager)


EXPORTS = {
    "lm": lambda: (lm(), (tokens(20),)),
    "lm_with_state": lambda: lm_call("ttt_linear_debug", decode=True),
    "lm_window_attention_with_state": lambda: lm_call("attention_debug", True, attention_window=8),
    "video": lambda: (video(), (frames(2),)),
    "video_with_state": lambda: (video(), (frames(1, seed=2), video()(frames(2)).state)),
}


@pytest.mark.parametrize("case", list(EXPORTS))
def test_export_equals_eager(case):
    model, args = EXPORTS[case]()
    with torch.no_grad():
        exported = torch.export.export(model, args)
        out, ref = exported.module()(*args), model(*args)
    out, ref = tree_leaves(out), tree_leaves(ref)
    assert len(out) == len(ref)
    for a, b in zip(out, ref):
        if isinstance(b, torch.Tensor):
            torch.testing.assert_close(a, b)
        else:
            assert a == b


@pytest.mark.parametrize("compile", [False, True])
def test_lightning_modules_compile_the_model_when_the_config_says_so(monkeypatch, compile):
    optim = OptimConfig()
    modules = [
        LMModule(config_from_name("ttt_linear_debug", compile=compile), optim, 10),
        VideoPredictModule(
            config_from_name("video_ttt_linear_debug", compile=compile), optim, 10, 2, 2
        ),
    ]
    compiled = []
    for module in modules:
        monkeypatch.setattr(module.model, "compile", lambda m=module: compiled.append(m))
        module.trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
        module.configure_model()
    assert compiled == (modules if compile else [])


def test_without_a_cpp_compiler_the_model_runs_eager_with_a_warning(monkeypatch):
    import torch._inductor.cpp_builder as cpp_builder

    def no_compiler():
        raise RuntimeError("no C++ compiler found among ('g++',)")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    model = lm()
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler .* the model runs eager"):
        assert compile_model(model) is False
    assert model._compiled_call_impl is None
    model(tokens(5))  # still runs


def test_with_a_compiler_the_model_is_compiled():
    model = lm()
    assert compile_model(model) is True and model._compiled_call_impl is not None
