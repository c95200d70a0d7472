"""A TTT video model's state over a long stream (the small version of
benchmarks/long_stream.py): finite, and growing no faster than the laws derived there.

The inner loss ``1/2 ||LN(f(k)) - (v - k)||^2`` is invariant to scaling TTT-Linear's
``(W1, b1)`` and TTT-MLP's ``(W2, b2)`` (LayerNorm removes the scale), so each inner step is
orthogonal to such a group and adds ``eta^2 G^2 / ||theta||^2`` to ``||theta||^2`` (``G``: the
gradient at unit norm): ``||theta||^4`` grows at most linearly once ``G`` stops growing, and
the norm after ``t`` frames is at most ``(t / s)^(1/4)`` times the norm after ``s`` frames.
TTT-MLP's ``(W1, b1)`` has no invariance: with steps that do not grow and are not aligned
(a random walk), ``||theta||^2`` grows at most linearly, a ratio of at most ``(t / s)^(1/2)``.
The benchmark's 100,000-frame streams show both (the first from ~1,000 frames on, trained and
untrained). Here ``s`` is 500 frames of a 2,000-frame stream: bounds ``4^(1/4)`` and ``2``.
A state that drifts (steady growth would give 4x) or turns NaN fails.
"""

from __future__ import annotations

import pytest
import torch

from ttt_video.data.synthetic.patterns import pattern_frames
from ttt_video.models import config_from_name
from ttt_video.models.video import VideoModel, VideoState

FRAMES, EARLY, CHUNK, SIZE = 2_000, 500, 250, 16
EXPONENTS = {"video_ttt_linear_debug": (0.25,), "video_ttt_mlp_debug": (0.5, 0.25)}
"""Per preset, the growth exponent bound of each inner layer's ``(W, b)`` group."""


def group_norms(state: VideoState) -> list[list[float]]:
    """Per block, the norm of each inner layer's ``(W, b)`` group."""
    norms = []
    for block in state.backbone.blocks:
        ttt = block.mixer.ttt
        norms.append(
            [
                float((w.square().sum() + b.square().sum()).sqrt())
                for w, b in zip(ttt.weights, ttt.biases)
            ]
        )
    return norms


def state_tensors(state: VideoState):
    for block in state.backbone.blocks:
        ttt = block.mixer.ttt
        yield from ttt.weights + ttt.biases + ttt.grad_weights + ttt.grad_biases


@pytest.mark.parametrize("preset", list(EXPONENTS))
@torch.no_grad()
def test_state_stays_finite_and_within_the_growth_laws(preset):
    torch.manual_seed(0)
    cfg = config_from_name(preset, image_size=SIZE, patch_size=4, channels=3)
    model = VideoModel(cfg).eval()
    gain = float(model.backbone.norm.weight.abs().max())
    state, norms = None, {}
    for start in range(0, FRAMES, CHUNK):
        out = model(pattern_frames(start, CHUNK, SIZE, SIZE)[None], state)
        state = out.state
        assert all(torch.isfinite(t).all() for t in state_tensors(state)), state.frames
        assert torch.isfinite(out.next_frames).all(), state.frames
        # The final RMSNorm bounds every token's features: RMS <= max |gain|.
        assert float(out.features.square().mean(-1).sqrt().max()) <= gain * (1 + 1e-5)
        if state.frames in (EARLY, FRAMES):
            norms[state.frames] = group_norms(state)
    for early, late in zip(norms[EARLY], norms[FRAMES]):
        for exponent, before, after in zip(EXPONENTS[preset], early, late):
            assert after <= (FRAMES / EARLY) ** exponent * before, (norms, exponent)
