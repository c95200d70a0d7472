"""Rotary position embedding on adjacent pairs.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim (even), ``m`` pair index
``0..d/2-1``. The pair ``(x[2m], x[2m+1])`` at position ``p`` is rotated by the angle
``p * theta^(-2m/d)``. Angles are formed in fp32 (like the paper's code; fp64 for fp64
inputs) and the rotation is applied in the dtype of ``x``.

``apply_rope`` takes the half-width ``cos, sin: [T, d/2]`` of ``rope_cos_sin`` (cheapest when
the tables are made per call, as attention does for its absolute positions). A layer whose
positions repeat (the TTT layers: the position inside the mini-batch) keeps full-width tables
as buffers (``RotaryTable``) and applies them with ``rotate``: ``x * cos2 + swap(x) * sin2``
with ``cos2 = (c_0, c_0, c_1, c_1, ...)``, ``sin2 = (-s_0, s_0, -s_1, s_1, ...)`` and ``swap``
exchanging the members of each pair, which is exactly ``(x0 c - x1 s, x1 c + x0 s)`` in
floating point, in fewer ops.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
    """Rotate adjacent pairs of ``x: [B, T, H, d]`` by ``cos, sin: [T, d/2]``; same shape out
    (for tables made per call: the half-width ones take fewer ops to make)."""
    pairs = x.unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.stack((x0 * c - x1 * s, x1 * c + x0 * s), dim=-1).flatten(-2)


def rotate(x: Tensor, cos2: Tensor, sin2: Tensor) -> Tensor:
    """Rotate adjacent pairs of ``x: [B, T, ..., d]`` by full-width tables ``cos2, sin2:
    [T, n d]`` tiled over the ``n`` heads of the ``...`` dims (``RotaryTable``; one contiguous
    row per token broadcasts fast), cast to the dtype of ``x``. Same shape out."""
    flat = x.flatten(2)  # [B, T, n d]
    x0, x1 = flat.unflatten(-1, (-1, 2)).unbind(-1)
    swapped = torch.stack((x1, x0), -1).flatten(-2)
    return (flat * cos2.to(x.dtype) + swapped * sin2.to(x.dtype)).view(x.shape)


class RotaryTable(nn.Module):
    """The full-width tables of positions ``0..n-1``, tiled over ``heads`` heads, as buffers
    ``cos2, sin2: [n, heads d]`` in the module's dtype and on its device: moving or casting
    the module recomputes them (so an fp64 model gets fp64 angles), and they are never saved.

    Args:
        length: ``n``; head_dim: ``d`` (even); theta: the frequency base; heads: tiling.
    """

    def __init__(self, length: int, head_dim: int, theta: float, heads: int = 1) -> None:
        super().__init__()
        self.length, self.head_dim, self.theta, self.heads = length, head_dim, theta, heads
        self._fill(torch.get_default_dtype(), None)

    def _fill(self, dtype: torch.dtype, device: torch.device | None) -> None:
        positions = torch.arange(self.length, device=device)
        cos, sin = rope_cos_sin(positions, self.head_dim, self.theta, dtype)  # [n, d/2]
        cos2 = cos.repeat_interleave(2, -1).repeat(1, self.heads)
        sin2 = torch.stack((-sin, sin), -1).flatten(-2).repeat(1, self.heads)
        self.register_buffer("cos2", cos2, persistent=False)
        self.register_buffer("sin2", sin2, persistent=False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._fill(self.cos2.dtype, self.cos2.device)
        return self

    def rows(self, start: int, count: int) -> tuple[Tensor, Tensor]:
        """``cos2, sin2: [count, heads d]`` of positions ``(start + t) mod n`` for ``t < count``."""
        if start + count > self.length:  # wraps around: tile the table
            reps = -(-(start + count) // self.length)
            return (
                self.cos2.repeat(reps, 1)[start : start + count],
                self.sin2.repeat(reps, 1)[start : start + count],
            )
        return self.cos2[start : start + count], self.sin2[start : start + count]
