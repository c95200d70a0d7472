"""Sliding-window attention (``attention_window``): the dense masked reference, streams cut
anywhere (token by token included) equal one pass, and a cache that stays at ``W`` tokens."""

import pytest
import torch
import torch.nn.functional as F

from ttt_video.layers import BlockConfig, CausalSelfAttention
from ttt_video.layers.rope import apply_rope, rope_cos_sin
from ttt_video.testing import assert_close

D, H = 16, 2


def make_attention(window: int) -> CausalSelfAttention:
    torch.manual_seed(0)
    cfg = BlockConfig(width=D, num_heads=H, mixer="attention", attention_window=window)
    return CausalSelfAttention(cfg).double()


def dense_reference(attn: CausalSelfAttention, x: torch.Tensor, window: int) -> torch.Tensor:
    """Every query against every key with the mask ``t - W < s <= t``, written out."""
    B, T, _ = x.shape
    shape = (B, T, H, D // H)
    cos, sin = rope_cos_sin(torch.arange(T), D // H, attn.rope_theta, x.dtype)
    q = apply_rope(attn.q_proj(x).view(shape), cos, sin).transpose(1, 2)
    k = apply_rope(attn.k_proj(x).view(shape), cos, sin).transpose(1, 2)
    v = attn.v_proj(x).view(shape).transpose(1, 2)
    offset = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    mask = (offset >= 0) & (offset < window)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.o_proj(o.transpose(1, 2).reshape(B, T, D))


@pytest.mark.parametrize("window", [1, 3, 5, 16])
def test_window_matches_the_dense_mask(window):
    attn = make_attention(window)
    x = torch.randn(2, 13, D, dtype=torch.float64)
    y, cache = attn(x)
    assert_close("y", y, dense_reference(attn, x, window))
    assert cache.position == 13 and cache.k.shape[2] == min(window, 13)


def test_a_window_longer_than_the_stream_is_full_attention():
    x = torch.randn(1, 9, D, dtype=torch.float64)
    assert_close("y", make_attention(9)(x)[0], make_attention(0)(x)[0])


def test_a_window_differs_from_full_attention_beyond_it():
    x = torch.randn(1, 9, D, dtype=torch.float64)
    windowed, full = make_attention(4)(x)[0], make_attention(0)(x)[0]
    assert_close("inside the window", windowed[:, :4], full[:, :4])
    assert (windowed[:, 4:] - full[:, 4:]).abs().max() > 1e-3


@pytest.mark.parametrize("cuts", [[5, 6], [1, 2, 3, 7], list(range(1, 17))], ids=["3", "5", "tok"])
def test_stream_cut_anywhere_equals_one_pass_and_the_cache_stays_bounded(cuts):
    window = 4
    attn = make_attention(window)
    x = torch.randn(2, 17, D, dtype=torch.float64)
    full, _ = attn(x)
    pieces, state, start = [], None, 0
    for end in [*cuts, 17]:
        y, state = attn(x[:, start:end], state)
        pieces.append(y)
        assert state.position == end and state.k.shape[2] == min(window, end)
        start = end
    assert_close("y", torch.cat(pieces, 1), full)


def test_the_window_is_validated():
    with pytest.raises(ValueError, match="attention_window"):
        BlockConfig(mixer="attention", attention_window=-1)
    with pytest.raises(ValueError, match="attention_window: an option of mixer='attention'"):
        BlockConfig(mixer="ttt_linear", attention_window=8)


def test_the_cache_holds_only_the_window():
    attn = make_attention(4)
    _, cache = attn(torch.randn(1, 64, D, dtype=torch.float64))
    assert cache.k.untyped_storage().nbytes() == cache.k.numel() * cache.k.element_size()
