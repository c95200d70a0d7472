"""Rotary position embedding on adjacent pairs.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim (even), ``m`` pair index
``0..d/2-1``. The pair ``(x[2m], x[2m+1])`` at position ``p`` is rotated by the angle
``p * theta^(-2m/d)``. Angles are formed in fp32 (like the paper's code; fp64 for fp64
inputs) and the rotation is applied in the dtype of ``x``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope_cos_sin(
    positions: Tensor, head_dim: int, theta: float = 10000.0, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """Cosines and sines of the rotation angles.

    Args:
        positions: ``[T]`` integer positions.
        head_dim: ``d`` (even).
        theta: the frequency base.
        dtype: dtype of the result (fp32 when None).

    Returns:
        ``cos, sin: [T, d/2]``.
    """
    if head_dim % 2:
        raise ValueError(f"head_dim: RoPE needs an even head dim, got {head_dim}")
    dtype = dtype or torch.float32
    work = torch.promote_types(dtype, torch.float32)
    exponents = torch.arange(0, head_dim, 2, device=positions.device).to(work) / head_dim
    inv_freq = 1.0 / (theta**exponents)
    angles = positions.to(work)[:, None] * inv_freq[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent pairs of ``x: [B, T, H, d]`` by ``cos, sin: [T, d/2]``; same shape out."""
    pairs = x.unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.stack((x0 * c - x1 * s, x1 * c + x0 * s), dim=-1).flatten(-2)
