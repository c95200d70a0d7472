"""RoPE, the causal conv, RMSNorm, SwiGLU and the block config: conventions and errors."""

import math

import pytest
import torch

from ttt_video.layers import MIXERS, BlockConfig, CausalConv1d, RMSNorm, apply_rope, rope_cos_sin
from ttt_video.layers.block import build_mixer
from ttt_video.layers.config import MIXER_NAMES
from ttt_video.testing import assert_close


def test_rope_rotates_adjacent_pairs_by_position_times_frequency():
    d, pos = 8, 3
    x = torch.randn(1, 1, 1, d, dtype=torch.float64)
    cos, sin = rope_cos_sin(torch.tensor([pos]), d, 10000.0, torch.float64)
    out = apply_rope(x, cos, sin)[0, 0, 0]
    for m in range(d // 2):
        angle = pos * 10000.0 ** (-2 * m / d)
        x0, x1 = x[0, 0, 0, 2 * m], x[0, 0, 0, 2 * m + 1]
        expected = torch.stack(
            (
                x0 * math.cos(angle) - x1 * math.sin(angle),
                x1 * math.cos(angle) + x0 * math.sin(angle),
            )
        )
        assert_close(f"pair {m}", expected, out[2 * m : 2 * m + 2], 1e-6)


def test_rope_preserves_norm_and_position_zero_is_identity():
    x = torch.randn(2, 5, 3, 16)
    cos, sin = rope_cos_sin(torch.arange(5), 16)
    out = apply_rope(x, cos, sin)
    assert_close("norm", x.norm(dim=-1), out.norm(dim=-1))
    assert_close("pos 0", x[:, 0], out[:, 0])


def test_rope_odd_head_dim_raises():
    with pytest.raises(ValueError, match="head_dim"):
        rope_cos_sin(torch.arange(3), 7)


def test_causal_conv_tap_layout_and_resume():
    conv = CausalConv1d(3, 4).double()
    x = torch.randn(2, 11, 3, dtype=torch.float64)
    with torch.no_grad():
        conv.bias.zero_()
        conv.weight.zero_()
        conv.weight[:, 0, 3] = 1.0
    assert_close("last tap is the current token", x, conv(x)[0])
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, 0] = 1.0
    shifted = torch.cat((torch.zeros(2, 3, 3, dtype=x.dtype), x[:, :-3]), dim=1)
    assert_close("first tap is 3 steps back", shifted, conv(x)[0])
    torch.nn.init.normal_(conv.weight)
    full, tail = conv(x)
    a, t1 = conv(x[:, :5])
    b, t2 = conv(x[:, 5:6], t1)
    c, t3 = conv(x[:, 6:], t2)
    assert_close("split == one pass", full, torch.cat((a, b, c), 1))
    assert_close("tail", tail, t3)
    assert tail.shape == (2, 3, 3)


def test_dilated_causal_conv_matches_conv1d_and_resumes_token_by_token():
    s, w = 3, 4  # taps 0, 3, 6 and 9 tokens back
    conv = CausalConv1d(5, w, dilation=s).double()
    torch.nn.init.normal_(conv.weight)
    x = torch.randn(2, 17, 5, dtype=torch.float64)
    padded = torch.nn.functional.pad(x.transpose(1, 2), ((w - 1) * s, 0))
    ref = torch.nn.functional.conv1d(padded, conv.weight, conv.bias, dilation=s, groups=5)
    full, tail = conv(x)
    assert_close("== F.conv1d(dilation=3)", ref.transpose(1, 2), full)
    assert tail.shape == (2, (w - 1) * s, 5)
    state, parts = None, []
    for start, stop in ((0, 2), (2, 3), (3, 4), (4, 11), (11, 17)):  # chunks shorter than the tail
        y, state = conv(x[:, start:stop], state)
        parts.append(y)
    assert_close("chunked == one pass", full, torch.cat(parts, 1))
    assert_close("tail", tail, state)


def test_rmsnorm():
    norm = RMSNorm(6, eps=1e-6)
    x = torch.randn(4, 6)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert_close("rmsnorm", expected, norm(x))


def test_mixer_registry_matches_config_names():
    assert tuple(MIXERS) == MIXER_NAMES


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"width": 30, "num_heads": 4}, "width"),
        ({"width": 0}, "width"),
        ({"num_heads": -1}, "num_heads"),
        ({"mixer": "lstm"}, "mixer"),
        ({"impl": "cuda"}, "impl"),
        ({"mini_batch_size": 0}, "mini_batch_size"),
        ({"width": 24, "num_heads": 8}, "num_heads"),
        ({"bidirectional": True}, "bidirectional"),
        ({"ttt_base_lr": -1.0}, "ttt_base_lr"),
        ({"conv_dilation": 0}, "conv_dilation"),
    ],
)
def test_block_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BlockConfig(**kwargs)


def test_unknown_mixer_lists_the_valid_ones():
    cfg = BlockConfig(width=32, num_heads=4)
    cfg.mixer = "mamba"
    with pytest.raises(ValueError, match="ttt_linear, ttt_mlp, attention"):
        build_mixer(cfg)


def test_base_lr_defaults_per_mixer():
    assert BlockConfig(mixer="ttt_linear").base_lr == 1.0
    assert BlockConfig(mixer="ttt_mlp").base_lr == 0.1
    assert BlockConfig(mixer="ttt_mlp", ttt_base_lr=0.5).base_lr == 0.5
