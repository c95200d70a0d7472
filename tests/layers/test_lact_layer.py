"""The LaCT mixer: window attention == a dense masked reference, naive == chunked through the
layer, split streams and decode == one pass (fast weights, momentum, window tail, partial
chunk), gradients, bounded state, config errors, the block and the video model."""

import pytest
import torch

from ttt_video.layers import Block, BlockConfig
from ttt_video.layers.attention import window_attention
from ttt_video.layers.lact import LaCT, LaCTLayerState
from ttt_video.models.video import VideoModel
from ttt_video.models.video_config import VideoConfig
from ttt_video.testing import assert_close

T_BACKBONE = dict(pre_conv=False, share_qk=False, use_gate=False)


def make(seed=0, dtype=torch.float64, **kw):
    """A width-16 LaCT layer (chunk 4, window 6, 2 fast heads of 8, hidden 12), jittered."""
    torch.manual_seed(seed)
    opts = dict(width=16, num_heads=4, ffn_width=32, mixer="lact", mini_batch_size=4)
    opts.update(lact_window=6, lact_num_heads=2, lact_hidden_ratio=1.5, lact_momentum=0.5)
    opts.update(T_BACKBONE, **kw)
    layer = LaCT(BlockConfig(**opts)).to(dtype)
    with torch.no_grad():  # away from the init so that every path carries signal
        for p in layer.parameters():
            p.add_(0.05 * torch.randn_like(p))
        layer.lr_bias.fill_(-1.0)  # inner steps large enough to matter
    return layer


def inputs(T=15, B=2, D=16, dtype=torch.float64, seed=1):
    return torch.randn(B, T, D, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def dense_window_attention(q, k, v, window, chunk, causal):
    """Softmax attention over the whole stream with the mask written from positions."""
    T = q.shape[2]
    t, s = torch.arange(T)[:, None], torch.arange(T)[None, :]
    if causal:
        allowed = (s <= t) & (s > t - window)
    else:
        start = t // chunk * chunk
        allowed = (s >= start - window) & (s < start + chunk)
    scores = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v


@pytest.mark.parametrize(
    "causal, cuts",
    [
        (True, [0, 3, 7, 8, 14]),  # calls shorter than the window, one token, a full tail
        (True, [0, 14]),  # one call: three blocks of queries, the last one padded
        (True, [0, 2, 14]),  # a tail shorter than the window before several blocks
        (True, [0, 6, 14]),  # blocks shorter than the window: two of them see the front padding
        (False, [0, 4, 12, 14]),  # non-causal: cut at chunk borders
    ],
    ids=[
        "causal-short-calls",
        "causal-one-call",
        "causal-short-tail",
        "causal-short-blocks",
        "noncausal",
    ],
)
def test_window_attention_matches_a_dense_mask(causal, cuts):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 14, 4, dtype=torch.float64, generator=g) for _ in range(3))
    window, chunk = 5, 4
    ref = dense_window_attention(q, k, v, window, chunk, causal)
    tail, pieces = None, []
    for a, b in zip(cuts[:-1], cuts[1:]):
        o, tail = window_attention(
            q[..., a:b, :], k[..., a:b, :], v[..., a:b, :], tail, a % chunk if causal else 0,
            window, chunk, causal,
        )  # fmt: skip
        assert tail[0].shape[2] == min(window, b)
        pieces.append(o)
    assert_close("o", ref, torch.cat(pieces, 2))


def test_causal_window_attention_matches_a_dense_mask_for_every_small_shape():
    # every window W <= 5, call length T <= 12 and tail S <= W: one block or several, the last
    # block padded or not, front padding in no block, one or several
    g = torch.Generator().manual_seed(0)
    for window in range(1, 6):
        for S in range(window + 1):
            for T in range(1, 13):
                q, k, v = (
                    torch.randn(2, 3, S + T, 4, dtype=torch.float64, generator=g) for _ in range(3)
                )
                ref = dense_window_attention(q, k, v, window, window, causal=True)[..., S:, :]
                tail = (k[..., :S, :], v[..., :S, :]) if S else None
                o, _ = window_attention(
                    q[..., S:, :], k[..., S:, :], v[..., S:, :], tail, 0, window, window, True
                )
                assert_close(f"o (W={window}, S={S}, T={T})", ref, o)


def test_window_attention_refuses_an_empty_call():
    q = torch.zeros(1, 2, 0, 4)
    with pytest.raises(ValueError, match="T = 0"):
        window_attention(q, q, q, None, 0, 4, 4, True)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_naive_and_chunked_agree_through_the_layer(causal):
    layer = make(causal=causal)
    x = inputs()
    layer.cfg.impl = "naive"
    ref, ref_state = layer(x)
    layer.cfg.impl = "auto"
    out, state = layer(x)
    assert_close("y", ref, out)
    for a, b in zip(ref_state.fast.tensors(), state.fast.tensors()):
        assert_close("fast state", a, b)


@pytest.mark.parametrize("muon", [True, False], ids=["muon", "sgd"])
def test_prefill_decode_and_pieces_equal_one_pass(muon):
    layer = make(lact_muon=muon)
    x = inputs(T=15)
    full, full_state = layer(x)
    pieces, state = [], None
    for a, b in ((0, 5), (5, 6), (6, 7), (7, 13), (13, 14), (14, 15)):  # mid-chunk cuts, decode
        y, state = layer(x[:, a:b], state)
        pieces.append(y)
    assert_close("y", full, torch.cat(pieces, 1))
    assert state.position == 15 and state.fast.position == full_state.fast.position == 3
    for a, b in zip(full_state.fast.tensors(), state.fast.tensors()):
        assert_close("fast state", a, b)
    for a, b in zip(full_state.window, state.window):
        assert_close("window tail", a, b)


def test_noncausal_pieces_at_chunk_borders_equal_one_pass():
    layer = make(causal=False)
    x = inputs(T=16)
    full, _ = layer(x)
    y1, state = layer(x[:, :4])
    y2, state = layer(x[:, 4:12], state)
    y3, _ = layer(x[:, 12:], state)
    assert_close("y", full, torch.cat((y1, y2, y3), 1))
    with pytest.raises(ValueError, match="chunk border"):
        layer(x[:, 2:4], layer(x[:, :2])[1])


def test_the_fast_weights_carry_what_the_window_has_dropped():
    """With the window far behind, the first token still depends on the last chunk's output
    only through the fast weights: turning learning off (learning rates ~0) removes it.
    Without Muon, whose normalised step would not shrink with the learning rates."""
    layer = make(lact_window=2, lact_muon=False)
    x = inputs(T=13)
    x.requires_grad_(True)
    y, _ = layer(x)
    (dx,) = torch.autograd.grad(y[:, -1].sum(), x)
    assert dx[:, 0].abs().max() > 1e-6
    with torch.no_grad():
        layer.lr_bias.fill_(-60.0)
        layer.lr_weight.zero_()
    y, _ = layer(x)
    (dx,) = torch.autograd.grad(y[:, -1].sum(), x)
    assert dx[:, 0].abs().max() < 1e-12


def test_every_parameter_gets_a_gradient():
    layer = make(residual_gate=True)
    y, _ = layer(inputs(T=13))
    (y * torch.randn_like(y)).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, f"{name}: no gradient"


def test_state_is_bounded():
    layer = make()
    sizes, state = [], None
    with torch.no_grad():
        for _ in range(6):
            _, state = layer(inputs(T=3), state)
            sizes.append(state.nbytes())
    assert sizes[1] == sizes[-1]  # the window (6 tokens) is full after two calls
    assert isinstance(state.detach(), LaCTLayerState)


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(impl="triton"), "impl"),
        (dict(lact_momentum=1.0), "lact_momentum"),
        (dict(lact_num_heads=3), "lact_num_heads"),
        (dict(lact_window=-1), "lact_window"),
        (dict(lact_hidden_ratio=0), "lact_hidden_ratio"),
        (dict(causal=False, bidirectional=True), "bidirectional"),
    ],
)
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        BlockConfig(width=16, num_heads=4, mixer="lact", **kw)


def test_block_streams_with_a_lact_mixer():
    torch.manual_seed(0)
    cfg = BlockConfig(width=16, num_heads=4, ffn_width=32, mixer="lact", mini_batch_size=4,
                      lact_window=3, pre_conv=True)  # fmt: skip
    block = Block(cfg).double()
    x = inputs(T=10)
    full, _ = block(x)
    y1, state = block(x[:, :7])
    y2, state = block(x[:, 7:], state.detach())
    assert_close("h", full, torch.cat((y1, y2), 1))
    assert state.position == 10 and state.nbytes() > 0


def test_video_model_streams_frames_and_keeps_frame_causality():
    torch.manual_seed(0)
    cfg = VideoConfig(width=32, num_heads=2, ffn_width=64, num_layers=2, image_size=32,
                      patch_size=8, mixer="lact", causal=False, frames_per_mini_batch=1,
                      lact_window=24, **T_BACKBONE)  # fmt: skip
    model = VideoModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x = torch.rand(2, 6, 1, 32, 32, generator=torch.Generator().manual_seed(1))
        whole = model(x).next_frames
        first = model(x[:, :2])
        streamed = torch.cat((first.next_frames, model(x[:, 2:], first.state).next_frames), 1)
        later = x.clone()
        later[:, 3:] = torch.rand_like(later[:, 3:])
        changed = model(later).next_frames
    assert_close("next_frames", whole, streamed, 1e-5)
    assert_close("frames before the change", whole[:, :3], changed[:, :3], 1e-6)
    assert (whole[:, 3:] - changed[:, 3:]).abs().max() > 1e-4
