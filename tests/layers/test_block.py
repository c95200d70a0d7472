"""The residual block: every mixer, checkpointing on == off, the attention KV cache."""

import pytest
import torch

from ttt_video.layers import Block, BlockConfig, CausalSelfAttention, KVCache
from ttt_video.testing import assert_close


def make_block(mixer, m=True, **kw):
    torch.manual_seed(0)
    cfg = BlockConfig(
        width=16, num_heads=2, ffn_width=32, mixer=mixer, mini_batch_size=4,
        pre_conv=m, share_qk=m, use_gate=m, **kw,
    )  # fmt: skip
    return Block(cfg).double()


@pytest.mark.parametrize("mixer", ["ttt_linear", "ttt_mlp", "attention"])
def test_checkpointing_on_equals_off(mixer):
    block = make_block(mixer).train()
    x = torch.randn(2, 10, 16, dtype=torch.float64, requires_grad=True)
    results = []
    for flag in (False, True):
        block.cfg.gradient_checkpointing = flag
        block.zero_grad()
        x.grad = None
        y, _ = block(x)
        (y * torch.cos(y)).sum().backward()
        results.append((y.detach(), x.grad.clone(), [p.grad.clone() for p in block.parameters()]))
    (y0, gx0, gp0), (y1, gx1, gp1) = results
    assert_close("y", y0, y1)
    assert_close("dx", gx0, gx1)
    for (name, _), a, b in zip(block.named_parameters(), gp0, gp1):
        assert_close(name, a, b)


@pytest.mark.parametrize("mixer", ["ttt_linear", "ttt_mlp", "attention"])
@pytest.mark.parametrize("m", [True, False], ids=["M", "T"])
def test_block_split_stream_equals_one_pass(mixer, m):
    block = make_block(mixer, m)
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    full, full_state = block(x)
    a, s = block(x[:, :6])
    b, s = block(x[:, 6:7], s)
    c, s = block(x[:, 7:], s)
    assert_close("y", full, torch.cat((a, b, c), 1))
    assert s.position == full_state.position == 11
    if m:
        assert_close("pre-conv tail", full_state.conv_tail, s.conv_tail)


def test_attention_cache_grows_and_prefill_with_cache_is_causal():
    torch.manual_seed(0)
    attn = CausalSelfAttention(BlockConfig(width=16, num_heads=2, mixer="attention")).double()
    x = torch.randn(1, 9, 16, dtype=torch.float64)
    full, cache = attn(x)
    assert isinstance(cache, KVCache) and cache.position == 9
    _, c4 = attn(x[:, :4])
    y, c9 = attn(x[:, 4:], c4)
    assert_close("prefill after cache", full[:, 4:], y)
    assert c9.nbytes() == cache.nbytes() > c4.nbytes()
