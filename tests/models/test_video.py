"""Video models: shapes, frame-level causality, streaming == whole clip, rollout, config errors,
the derived TTT mini-batch, and gradient checkpointing."""

import pytest
import torch
import yaml

import ttt_video.layers.block as block_module
from ttt_video.models import config_from_name, from_name, list_models
from ttt_video.models.video import VideoModel, rollout_stream
from ttt_video.models.video_config import VideoConfig
from ttt_video.testing import assert_close
from ttt_video.train.config import from_dict, plain

VIDEO_DEBUG = [n for n in list_models() if n.startswith("video_") and n.endswith("_debug")]
SMALL = dict(width=32, num_heads=2, ffn_width=64, num_layers=2, image_size=32, patch_size=8)


def perturbed(model: VideoModel, seed: int = 0) -> VideoModel:
    """The model with every parameter jittered (zero-initialised heads would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def build(seed: int = 0, **kw) -> VideoModel:
    torch.manual_seed(seed)
    return perturbed(VideoModel(VideoConfig(**{**SMALL, **kw})), seed)


def clip(B=2, F=6, C=1, S=32, seed=1):
    return torch.rand(B, F, C, S, S, generator=torch.Generator().manual_seed(seed))


VARIANTS = [
    dict(mixer="ttt_linear", causal=False),
    dict(mixer="ttt_linear", motion_input=True, decoder="conv", num_classes=5),
    dict(mixer="ttt_mlp", frames_per_mini_batch=2),
    dict(mixer="attention", frame_mixer=False, residual=False),
    dict(mixer="attention", attention_window=24),  # a frame and a half of 16 tokens
    dict(mixer="ttt_linear", causal=False, qk_l2_norm=True, target_ln=True, residual_gate=True),
    # the M backbone's convs over frames: a tail of 3 frames, longer than a 2-frame chunk
    dict(mixer="ttt_linear", causal=False, pre_conv=True, share_qk=True, temporal_conv=True),
]


@pytest.mark.parametrize("kw", VARIANTS)
def test_shapes(kw):
    model = build(**kw)
    out = model(clip())
    N = model.tokens_per_frame
    assert out.features.shape == (2, 6, N, 32)
    assert out.next_frames.shape == (2, 6, 1, 32, 32)
    assert out.state.frames == 6
    if kw.get("num_classes"):
        assert out.logits.shape == (2, 6, 5)


@pytest.mark.parametrize("kw", VARIANTS)
def test_prediction_of_frame_t_plus_1_ignores_later_frames(kw):
    model = build(**kw)
    x = clip()
    y = x.clone()
    y[:, 3:] = torch.rand_like(y[:, 3:])
    with torch.no_grad():
        a, b = model(x).next_frames, model(y).next_frames
    assert_close("next_frames[:, :3]", a[:, :3], b[:, :3], 1e-6)
    assert (a[:, 3:] - b[:, 3:]).abs().max() > 1e-4


@pytest.mark.parametrize("kw", VARIANTS)
def test_streaming_equals_whole_clip(kw):
    model = build(**kw)
    x = clip(F=8)
    with torch.no_grad():
        whole = model(x)
        state, parts = None, []
        for start in range(0, 8, 2):
            out = model(x[:, start : start + 2], state)
            state = out.state
            parts.append(out.next_frames)
    assert_close("next_frames", whole.next_frames, torch.cat(parts, 1), 1e-5)
    assert state.frames == 8


@pytest.mark.parametrize(
    "kw",
    [
        dict(causal=False),
        dict(mixer="attention", attention_window=40),
        dict(causal=False, pre_conv=True, share_qk=True, temporal_conv=True),
    ],
    ids=["ttt", "window", "temporal_conv"],
)
def test_frame_by_frame_streaming_keeps_state_size(kw):
    model = build(**kw)
    x = clip(F=12)
    sizes = []
    with torch.no_grad():
        state, preds = None, []
        for t in range(12):
            out = model(x[:, t : t + 1], state)
            state = out.state
            preds.append(out.next_frames)
            sizes.append(state.nbytes())
        assert_close("next_frames", model(x).next_frames, torch.cat(preds, 1), 1e-5)
    assert len(set(sizes[2:])) == 1  # a window of 40 tokens is full after 3 frames of 16


@pytest.mark.parametrize("horizon", [1, 3, 17])
def test_rollout_any_horizon(horizon):
    model = build(causal=False)
    x = clip(F=4)
    with torch.no_grad():
        preds, state = model.rollout(x, horizon)
        streamed, _ = rollout_stream(model, x, horizon, chunk=3)
    assert preds.shape == (2, horizon, 1, 32, 32)
    assert 0 <= preds.min() and preds.max() <= 1
    assert state.frames == 4 + horizon - 1
    assert_close("rollout", preds, streamed, 1e-5)


def test_rollout_first_frame_is_the_one_step_prediction():
    model = build()
    x = clip(F=5)
    with torch.no_grad():
        preds, _ = model.rollout(x, 2)
        step = model(x).next_frames[:, -1].clamp(0, 1)
    assert_close("first rollout frame", step, preds[:, 0], 1e-6)


def test_gradients_reach_every_trainable_parameter():
    model = build(motion_input=True, num_classes=3).train()
    out = model(clip(F=4))
    (out.next_frames.square().mean() + out.logits.logsumexp(-1).mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", VIDEO_DEBUG)
def test_debug_presets_build_and_run(name):
    model = from_name(name).eval()
    cfg = config_from_name(name)
    x = torch.rand(1, 3, cfg.channels, cfg.image_size, cfg.image_size)
    out = model(x)
    assert out.features.shape[:2] == (1, 3)


def test_classifier_only_model():
    model = build(decoder="none", num_classes=4, frame_mixer=False)
    out = model(clip())
    assert out.next_frames is None and out.logits.shape == (2, 6, 4)
    with pytest.raises(ValueError, match="decoder"):
        model.rollout(clip(), 2)


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(patch_size=5), "patch_size"),
        (dict(encoder="vit"), "encoder"),
        (dict(decoder="pixelshuffle"), "decoder"),
        (dict(channels=2), "channels"),
        (dict(decoder="none"), "num_classes"),
        (dict(causal=False, bidirectional=True), "bidirectional"),
        (dict(pre_conv=True, temporal_conv=True, conv_dilation=2), "^conv_dilation: 2 confl"),
        (
            dict(pre_conv=False, share_qk=False, temporal_conv=True),
            "^temporal_conv: the model has no convolution",
        ),
    ],
)
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        VideoConfig(**{**SMALL, **kw})


def test_bad_frames_and_chunks():
    model = build(causal=False, frames_per_mini_batch=2)
    with pytest.raises(ValueError, match="frames"):
        model(torch.rand(1, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="non-causal"):
        model(clip(F=3))


def test_mini_batch_is_derived_from_frames_and_a_conflicting_value_is_refused():
    """``frames_per_mini_batch`` used to silently replace an explicit ``mini_batch_size``."""
    with pytest.raises(
        ValueError, match=r"^mini_batch_size: 32 conflicts with frames_per_mini_batch=1 \(x 16"
    ):
        VideoConfig(**SMALL, mini_batch_size=32)
    with pytest.raises(ValueError, match=r"^mini_batch_size: required .* frames_per_mini_batch"):
        VideoConfig(**SMALL, frames_per_mini_batch=0)
    assert build(frames_per_mini_batch=2).mini_batch_size == 2 * 16  # N = (32 / 8)^2
    assert build(mini_batch_size=16).mini_batch_size == 16  # agrees with 1 frame: accepted
    assert build(frames_per_mini_batch=0, mini_batch_size=8).mini_batch_size == 8


def test_temporal_conv_spaces_the_taps_one_frame_apart():
    """With ``temporal_conv`` the pre-conv's tap ``j`` is the token ``(w-1-j) N`` back."""
    model = build(mixer="attention", pre_conv=True, temporal_conv=True)
    N, conv = model.tokens_per_frame, model.backbone.blocks[0].conv
    assert conv.dilation == N and conv.tail_len == 3 * N
    state = model(clip(F=5)).state.backbone.blocks[0]
    assert state.conv_tail.shape == (2, 3 * N, 32)


def test_model_cfg_is_the_given_config_and_loads_back_equal(tmp_path):
    cfg = VideoConfig(**SMALL, frames_per_mini_batch=2)
    model = VideoModel(cfg)
    assert model.cfg == cfg and model.cfg.mini_batch_size is None
    assert model.backbone.cfg.mini_batch_size == model.mini_batch_size == 32
    saved = yaml.safe_load(yaml.safe_dump(plain(model.cfg)))  # the run folder's config.yaml
    assert from_dict(VideoConfig, saved, "model") == model.cfg
    loaded = VideoModel.from_pretrained(model.save_pretrained(tmp_path / "model"))
    assert loaded.cfg == model.cfg and loaded.mini_batch_size == 32


@pytest.mark.parametrize("mixer", ["ttt_linear", "ttt_mlp"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(monkeypatch, mixer):
    """``VideoConfig.gradient_checkpointing`` reaches every block of the backbone, and
    recomputing the blocks in the backward changes neither the loss nor any gradient."""
    calls = []
    recompute = block_module.checkpoint
    monkeypatch.setattr(
        block_module, "checkpoint", lambda *a, **kw: calls.append(1) or recompute(*a, **kw)
    )
    x = clip(F=4)
    results = {}
    for on in (False, True):
        model = build(mixer=mixer, num_classes=3, gradient_checkpointing=on).train()
        out = model(x)
        loss = out.next_frames.square().mean() + out.logits.logsumexp(-1).mean()
        params = [p for p in model.parameters() if p.requires_grad]
        results[on] = (loss.detach(), torch.autograd.grad(loss, params))
    assert len(calls) == SMALL["num_layers"]  # one checkpointed call per block, only when on
    assert_close("loss", results[False][0], results[True][0], 1e-6)
    for i, (a, b) in enumerate(zip(results[False][1], results[True][1])):
        assert_close(f"grad {i}", a, b, 1e-6)
