"""Patch and tubelet embeddings: pixels to tokens with a learned spatial position embedding.

Letters: B batch, F frames, C channels, H height, W width, p patch side, t frames per tubelet,
N = (H / p) * (W / p) tokens per frame (or per tubelet), D token width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ttt_video.data.video.frames import frames_to_float
from ttt_video.encoders.base import FrameEncoder, check_frames


def _grid(image_size: int | tuple[int, int], patch: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(image (H, W), token grid (H / p, W / p)); raises unless p divides H and W."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    if h % patch or w % patch:
        raise ValueError(f"patch size {patch} must divide the image size {h}x{w}")
    return (h, w), (h // patch, w // patch)


class PatchEmbed(FrameEncoder):
    """Per-frame patch embedding: ``[B, F, C, H, W] -> [B, F * N, D]`` (frame-major)."""

    def __init__(
        self, image_size: int | tuple[int, int], patch_size: int, dim: int, in_chans: int = 3
    ):
        super().__init__()
        self.image_size, self.grid = _grid(image_size, patch_size)
        self.in_chans, self.patch_size, self.dim = in_chans, patch_size, dim
        self.tokens_per_frame = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.pos = nn.Parameter(torch.randn(1, self.tokens_per_frame, dim) * 0.02)

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, F, C, H, W]`` -> ``[B, F * N, D]``.

        The strided convolution ``proj`` is applied as a matrix product over flattened patches
        (same weights and result; on the CPU its backward is much faster than the conv's).
        """
        check_frames(frames, self.in_chans, self.image_size)
        p = self.patch_size
        x = frames_to_float(frames)
        x = rearrange(x, "b f c (gh p) (gw q) -> b f (gh gw) (c p q)", p=p, q=p)
        x = F.linear(x, self.proj.weight.flatten(1), self.proj.bias) + self.pos
        return x.flatten(1, 2)


class TubeletEmbed(FrameEncoder):
    """Tubelet embedding over ``t`` frames: ``[B, F, C, H, W] -> [B, F / t * N, D]``.

    ``F`` must be a multiple of ``t``; tokens are group-major (all ``N`` of group 0, ...).
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        patch_size: int,
        dim: int,
        tubelet: int = 2,
        in_chans: int = 3,
    ):
        super().__init__()
        self.image_size, self.grid = _grid(image_size, patch_size)
        self.in_chans, self.patch_size, self.dim = in_chans, patch_size, dim
        self.frames_per_token = tubelet
        self.tokens_per_frame = self.grid[0] * self.grid[1]
        kernel = (tubelet, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=kernel, stride=kernel)
        self.pos = nn.Parameter(torch.randn(1, self.tokens_per_frame, dim) * 0.02)

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, F, C, H, W]`` -> ``[B, F / t * N, D]``."""
        check_frames(frames, self.in_chans, self.image_size)
        if frames.shape[1] % self.frames_per_token:
            raise ValueError(
                f"F={frames.shape[1]} is not a multiple of tubelet={self.frames_per_token}"
            )
        x = rearrange(frames_to_float(frames), "b f c h w -> b c f h w")
        x = self.proj(x)  # [B, D, F/t, gh, gw]
        x = rearrange(x, "b d g gh gw -> b g (gh gw) d") + self.pos.unsqueeze(1)
        return x.flatten(1, 2)
