"""Decoders from tokens back to pixels, for frame prediction.

Letters: B batch, F frames, N = gh * gw tokens per frame, D token width, C channels, H height,
W width, p patch side (H = gh * p, W = gw * p).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn


def _split(tokens: torch.Tensor, n: int) -> int:
    """Frames in ``tokens [B, F * n, D]``; raises unless the count divides."""
    if tokens.ndim != 3 or tokens.shape[1] % n:
        raise ValueError(f"tokens must be [B, F * {n}, D], got {tuple(tokens.shape)}")
    return tokens.shape[1] // n


class LinearUnpatchify(nn.Module):
    """Each token to its ``p x p`` patch: ``[B, F * N, D] -> [B, F, C, H, W]`` (no activation)."""

    def __init__(
        self, dim: int, image_size: int | tuple[int, int], patch_size: int, out_chans: int = 3
    ):
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        if h % patch_size or w % patch_size:
            raise ValueError(f"patch size {patch_size} must divide the image size {h}x{w}")
        self.grid, self.patch_size, self.out_chans = (
            (h // patch_size, w // patch_size),
            patch_size,
            out_chans,
        )
        self.proj = nn.Linear(dim, patch_size * patch_size * out_chans)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, F * N, D]`` -> ``[B, F, C, H, W]``."""
        gh, gw = self.grid
        f = _split(tokens, gh * gw)
        x = self.proj(tokens)
        p = self.patch_size
        return rearrange(
            x, "b (f gh gw) (c p q) -> b f c (gh p) (gw q)", f=f, gh=gh, gw=gw, p=p, q=p
        )


class ConvDecoder(nn.Module):
    """A small conv decoder: tokens as a ``gh x gw`` map, upsampled x2 per stage to ``H x W``.

    ``[B, F * N, D] -> [B, F, C, H, W]``; needs ``H / gh == W / gw`` a power of two.
    """

    def __init__(
        self,
        dim: int,
        grid: tuple[int, int],
        image_size: int | tuple[int, int],
        out_chans: int = 3,
        hidden: int = 64,
    ):
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        scale = h // grid[0]
        if h % grid[0] or w != grid[1] * scale or scale & (scale - 1):
            raise ValueError(f"image {h}x{w} must be the grid {grid} times a power of two")
        layers: list[nn.Module] = [nn.Conv2d(dim, hidden, 1)]
        for _ in range(int(math.log2(scale))):
            layers += [
                nn.GELU(),
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(hidden, hidden, 3, padding=1),
            ]
        layers += [nn.GELU(), nn.Conv2d(hidden, out_chans, 3, padding=1)]
        self.grid, self.net = grid, nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, F * N, D]`` -> ``[B, F, C, H, W]``."""
        gh, gw = self.grid
        f = _split(tokens, gh * gw)
        x = rearrange(tokens, "b (f gh gw) d -> (b f) d gh gw", f=f, gh=gh, gw=gw)
        return rearrange(self.net(x), "(b f) c h w -> b f c h w", f=f)
