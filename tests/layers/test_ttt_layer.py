"""TTT layers: dual == naive, gradients reach every parameter, split streams == one pass,
prefill + decode == full forward, the decode step honours ``impl``, and the video options."""

import pytest
import torch

import ttt_video.kernels.triton as triton_kernels
from ttt_video.kernels import api as kernels_api
from ttt_video.kernels.common import layer_norm
from ttt_video.layers import TTTMLP, BlockConfig, TTTLinear
from ttt_video.testing import assert_close

LAYERS = {"ttt_linear": TTTLinear, "ttt_mlp": TTTMLP}


def make(mixer="ttt_linear", m=True, dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    opts = dict(width=16, num_heads=2, ffn_width=32, mixer=mixer, mini_batch_size=4)
    opts.update(pre_conv=m, share_qk=m, use_gate=m)
    opts.update(kw)
    cfg = BlockConfig(**opts)
    layer = LAYERS[mixer](cfg).to(dtype)
    with torch.no_grad():  # move away from the init so that every path carries signal
        for p in layer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return layer


def inputs(T=11, B=2, D=16, dtype=torch.float64, seed=1):
    torch.manual_seed(seed)
    return torch.randn(B, T, D, dtype=dtype)


@pytest.mark.parametrize("mixer", ["ttt_linear", "ttt_mlp"])
@pytest.mark.parametrize("m", [True, False], ids=["M", "T"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_dual_matches_naive(mixer, m, causal):
    layer = make(mixer, m, causal=causal)
    x = inputs()
    layer.cfg.impl = "naive"
    ref, ref_state = layer(x)
    layer.cfg.impl = "dual"
    out, state = layer(x)
    assert_close("y", ref, out, 1e-10)
    for i, (a, b) in enumerate(zip(ref_state.ttt.weights, state.ttt.weights)):
        assert_close(f"W{i + 1}", a, b, 1e-10)


@pytest.mark.parametrize("mixer", ["ttt_linear", "ttt_mlp"])
@pytest.mark.parametrize("m", [True, False], ids=["M", "T"])
def test_every_parameter_gets_a_gradient(mixer, m):
    layer = make(mixer, m, residual_gate=True)
    y, _ = layer(inputs(T=9))
    (y * torch.randn_like(y)).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert p.grad.abs().max() > 0, f"{name}: all-zero gradient"


@pytest.mark.parametrize("mixer", ["ttt_linear", "ttt_mlp"])
@pytest.mark.parametrize("m", [True, False], ids=["M", "T"])
def test_prefill_decode_and_chunks_equal_one_pass(mixer, m):
    layer = make(mixer, m)
    x = inputs(T=13)
    full, full_state = layer(x)
    pieces, state = [], None
    for a, b in ((0, 5), (5, 6), (6, 7), (7, 10), (10, 13)):  # prefill, decode steps, chunks
        y, state = layer(x[:, a:b], state)
        pieces.append(y)
    assert_close("y", full, torch.cat(pieces, 1), 1e-10)
    assert state.position == 13 and state.ttt.position == full_state.ttt.position == 1
    for i, (a, b) in enumerate(zip(full_state.ttt.weights, state.ttt.weights)):
        assert_close(f"W{i + 1}", a, b, 1e-10)
    if m:
        assert_close("conv tail", full_state.qk_tail, state.qk_tail)


def test_state_size_is_constant():
    layer = make("ttt_linear", True)
    _, s1 = layer(inputs(T=3))
    _, s2 = layer(inputs(T=30))
    assert s1.nbytes() == s2.nbytes() > 0


def test_qk_l2_norm_gives_unit_q_and_k():
    layer = make(qk_l2_norm=True)
    state = layer.initial_state(2)
    q, k, *_ = layer.project(inputs(), state)
    assert_close("|q|", torch.ones(q.shape[:-1], dtype=q.dtype), q.norm(dim=-1))
    assert_close("|k|", torch.ones(k.shape[:-1], dtype=k.dtype), k.norm(dim=-1))


def test_target_ln_makes_the_kernel_target_the_normalised_residual():
    plain, normed = make(seed=3), make(seed=3, target_ln=True)
    x = inputs()
    q, k, v, *_ = plain.project(x, plain.initial_state(2))
    _, k2, v2, *_ = normed.project(x, normed.initial_state(2))
    expected = layer_norm(v - k, plain.ttt_norm_weight, plain.ttt_norm_bias)
    assert_close("target", expected, v2 - k2, 1e-12)


def test_residual_gate_scales_by_tanh_alpha():
    plain, gated = make(seed=4), make(seed=4, residual_gate=True)
    gated.load_state_dict(plain.state_dict(), strict=False)
    x = inputs()
    assert_close("gated", torch.tanh(gated.residual_alpha) * plain(x)[0], gated(x)[0])


def test_noncausal_sees_the_whole_mini_batch_and_causal_does_not():
    x = inputs(T=8)
    x2 = x.clone()
    x2[:, 7] += 1.0  # last token of the second mini-batch of 4
    for causal, changed in ((True, False), (False, True)):
        layer = make(m=False, causal=causal)
        y, y2 = layer(x)[0], layer(x2)[0]
        assert torch.equal(y[:, :4], y2[:, :4])
        assert (not torch.equal(y[:, 4:7], y2[:, 4:7])) == changed


def test_bidirectional_sees_the_future_and_rejects_a_state():
    layer = make(m=False, causal=False, bidirectional=True)
    x = inputs(T=12)
    x2 = x.clone()
    x2[:, 11] += 1.0
    y, state = layer(x)
    assert not torch.equal(y[:, :4], layer(x2)[0][:, :4])
    with pytest.raises(ValueError, match="state"):
        layer(x, state)


def test_decode_at_any_position_in_fp32():
    layer = make("ttt_mlp", True, dtype=torch.float32)
    x = inputs(T=21, dtype=torch.float32)
    full, _ = layer(x)
    y, state = layer(x[:, :1])
    pieces = [y]
    for t in range(1, 21):
        y, state = layer(x[:, t : t + 1], state)
        pieces.append(y)
    assert_close("token by token", full, torch.cat(pieces, 1), 1e-5)


def decode_steps_used(monkeypatch) -> list[str]:
    """Record which one-token step (``"torch"`` or ``"triton"``) each decode call runs."""
    used = []

    def spy(module, attr, name):
        fn = getattr(module, attr)

        def wrapped(*args, **kwargs):
            used.append(name)
            return fn(*args, **kwargs)

        monkeypatch.setattr(module, attr, wrapped)

    spy(kernels_api, "ttt_decode_torch", "torch")
    spy(triton_kernels, "ttt_decode_triton", "triton")
    return used


@pytest.mark.parametrize("impl", ["naive", "dual", "auto", "triton"])
def test_decode_step_honours_the_layer_impl(monkeypatch, impl):
    """A ``T == 1`` call runs the layer's ``impl``: the PyTorch step for naive/dual, the
    Triton kernel for triton, and for auto Triton on CUDA and PyTorch elsewhere; each equals
    the reference layer on the whole stream (CPU tensors; the CUDA rule is
    ``test_decode_backend_rule``)."""
    device = "cpu"
    opts = dict(dtype=torch.float32, width=32, mini_batch_size=16)
    x = inputs(T=6, D=32, dtype=torch.float32).to(device)
    with torch.no_grad():
        full, _ = make(impl="naive", **opts).to(device)(x)
        layer = make(impl=impl, **opts).to(device)
        _, state = layer(x[:, :5])
        used = decode_steps_used(monkeypatch)
        y, _ = layer(x[:, 5:], state)
    triton = impl == "triton" or (impl == "auto" and device == "cuda")
    assert used == ["triton" if triton else "torch"]
    assert_close("decoded token", full[:, 5:], y, 1e-5)


def test_decode_backend_rule():
    """Which one-token step each ``impl`` runs, for CUDA and CPU tensors, with and without
    a gradient (Triton's decode has no backward)."""
    expected = {
        ("naive", True, False): "torch",
        ("dual", True, False): "torch",
        ("triton", False, False): "triton",
        ("triton", True, True): "triton",
        ("auto", True, False): "triton",
        ("auto", True, True): "torch",
        ("auto", False, False): "torch",
    }
    for (impl, is_cuda, needs_grad), backend in expected.items():
        assert kernels_api.decode_backend(impl, is_cuda, needs_grad) == backend


def test_auto_decodes_with_pytorch_when_a_gradient_is_needed(monkeypatch):
    """Triton's decode has no backward: ``auto`` takes the PyTorch step under autograd."""
    layer = make(dtype=torch.float32, width=32, mini_batch_size=16)
    x = inputs(T=6, D=32, dtype=torch.float32)
    _, state = layer(x[:, :5])
    used = decode_steps_used(monkeypatch)
    y, _ = layer(x[:, 5:], state)
    y.sum().backward()
    assert used == ["torch"] and layer.W1.grad is not None


def test_impl_names_are_those_of_the_kernels():
    with pytest.raises(
        ValueError, match="^impl: expected one of 'auto', 'naive', 'dual', 'triton'"
    ):
        BlockConfig(impl="torch")
    assert BlockConfig(impl="triton").impl == "triton"
