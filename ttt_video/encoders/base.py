"""The frame-encoder contract every encoder follows.

Letters: B batch, F frames, C channels, H height, W width, N tokens per frame, D token width.

``forward_features(frames [B, F, C, H, W]) -> tokens [B, F * N, D]`` in frame-major order: all
``N`` tokens of frame 0, then frame 1, ... (a tubelet encoder emits ``N`` tokens per group of
``t`` frames, so ``F / t * N`` tokens). The backbone reads them in that order, which is where the
temporal position comes from; encoders add only a spatial position. Inputs may be uint8 (scaled
to [0, 1] by ``ttt_video.data.video.frames.frames_to_float``) or float.
"""

from __future__ import annotations

import torch
from torch import nn


def check_frames(frames: torch.Tensor, channels: int, size: tuple[int, int]) -> None:
    """Raise ``ValueError`` unless ``frames`` is ``[B, F, channels, *size]``."""
    if frames.ndim != 5 or frames.shape[2] != channels or tuple(frames.shape[-2:]) != tuple(size):
        raise ValueError(
            f"frames must be [B, F, {channels}, {size[0]}, {size[1]}], got {tuple(frames.shape)}"
        )


class FrameEncoder(nn.Module):
    """Base of the encoders: subclasses set ``dim``, ``tokens_per_frame``, ``frames_per_token``."""

    dim: int
    tokens_per_frame: int
    frames_per_token: int = 1

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, F, C, H, W]`` -> ``[B, F / frames_per_token * tokens_per_frame, D]``."""
        raise NotImplementedError

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Same as ``forward_features``."""
        return self.forward_features(frames)
