"""Encoders and decoders: shapes, frame-major token order, timm wrapping, local weights."""

from __future__ import annotations

import pytest
import torch

from ttt_video.encoders import (
    ConvDecoder,
    LinearUnpatchify,
    PatchEmbed,
    TimmFrameEncoder,
    TubeletEmbed,
)


def changed_tokens(encoder, frames: torch.Tensor, frame: int) -> torch.Tensor:
    """Indices of the tokens that change when only ``frame`` of ``frames`` changes."""
    other = frames.clone()
    other[:, frame] = torch.rand_like(other[:, frame])
    with torch.no_grad():
        a, b = encoder.forward_features(frames), encoder.forward_features(other)
    return torch.nonzero((a - b).abs().amax(dim=(0, 2)) > 0).flatten()


def test_patch_embed_shapes_and_frame_major_order():
    enc = PatchEmbed(image_size=(16, 24), patch_size=8, dim=32, in_chans=3)
    frames = torch.rand(2, 5, 3, 16, 24)
    assert enc.tokens_per_frame == 6
    assert enc.forward_features(frames).shape == (2, 30, 32)
    for k in (0, 3):
        assert changed_tokens(enc, frames, k).tolist() == list(range(6 * k, 6 * k + 6))
    u8 = (frames * 255).round().to(torch.uint8)
    torch.testing.assert_close(enc(u8), enc(u8.float() / 255))
    with pytest.raises(ValueError, match="frames must be"):
        enc(torch.rand(2, 5, 1, 16, 24))


def test_tubelet_embed_groups_frames():
    enc = TubeletEmbed(image_size=16, patch_size=4, dim=8, tubelet=2, in_chans=1)
    frames = torch.rand(1, 6, 1, 16, 16)
    assert enc.forward_features(frames).shape == (1, 3 * 16, 8)
    assert changed_tokens(enc, frames, 3).tolist() == list(range(16, 32))
    with pytest.raises(ValueError, match="multiple of tubelet"):
        enc(torch.rand(1, 5, 1, 16, 16))


@pytest.mark.parametrize(
    "name,kwargs,tokens",
    [
        ("resnet18", {}, 1),
        ("vit_tiny_patch16_224", {"depth": 2}, 4),
        ("vit_tiny_patch16_224", {"depth": 2, "class_token": True, "reg_tokens": 2}, 4),
    ],
)
def test_timm_encoder_tokens_per_frame_and_order(name, kwargs, tokens):
    enc = TimmFrameEncoder(name, image_size=32, **kwargs).eval()
    frames = torch.rand(2, 3, 3, 32, 32)
    out = enc.forward_features(frames)
    assert enc.tokens_per_frame == tokens
    assert out.shape == (2, 3 * tokens, enc.dim)
    assert changed_tokens(enc, frames, 1).tolist() == list(range(tokens, 2 * tokens))


def test_timm_encoder_pool_frozen_and_local_weights(tmp_path):
    enc = TimmFrameEncoder("resnet18", image_size=64, pool=True, frozen=True)
    assert enc.tokens_per_frame == 1
    enc.train()
    assert not enc.model.training
    assert not any(p.requires_grad for p in enc.parameters())
    frames = torch.rand(1, 2, 3, 64, 64, requires_grad=True)
    assert not enc(frames).requires_grad
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": enc.model.state_dict()}, path)
    loaded = TimmFrameEncoder("resnet18", image_size=64, pool=True, weights=path).eval()
    torch.testing.assert_close(loaded(frames.detach()), enc(frames.detach()))
    torch.save({"unrelated": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="weights miss"):
        TimmFrameEncoder("resnet18", image_size=64, weights=path)


def test_linear_unpatchify_places_each_token():
    dec = LinearUnpatchify(dim=4, image_size=(8, 12), patch_size=4, out_chans=1)
    with torch.no_grad():
        dec.proj.weight.zero_()
        dec.proj.bias.zero_()
        dec.proj.weight[:, 0] = 1.0
    tokens = torch.zeros(1, 2 * 6, 4)
    tokens[0, 6 + 4, 0] = 1.0  # frame 1, grid row 1, column 1
    out = dec(tokens)
    assert out.shape == (1, 2, 1, 8, 12)
    assert out[0, 1, 0, 4:8, 4:8].eq(1).all() and out.sum() == 16


def test_encoder_decoder_round_trip_shapes():
    enc = PatchEmbed(image_size=64, patch_size=8, dim=16, in_chans=1)
    frames = torch.rand(2, 3, 1, 64, 64)
    tokens = enc(frames)
    conv = ConvDecoder(dim=16, grid=enc.grid, image_size=64, out_chans=1, hidden=8)
    lin = LinearUnpatchify(dim=16, image_size=64, patch_size=8, out_chans=1)
    assert conv(tokens).shape == lin(tokens).shape == frames.shape
    other = tokens.clone()
    other[:, 64:128] += 1
    diff = (conv(other) - conv(tokens)).abs().amax(dim=(0, 2, 3, 4))
    assert diff[1] > 0 and diff[0] == 0 and diff[2] == 0
    with pytest.raises(ValueError, match="power of two"):
        ConvDecoder(dim=16, grid=(8, 8), image_size=48)
