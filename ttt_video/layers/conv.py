"""Depthwise causal convolution over time, with the tail of past inputs as recurrent state.

Letters: ``B`` batch, ``T`` tokens, ``D`` channels, ``w`` kernel width. The weight has the
``nn.Conv1d`` layout ``[D, 1, w]``; tap ``w-1`` multiplies the current input and tap ``j``
the input ``w-1-j`` steps back, so a stream cut anywhere and resumed with the tail gives the
same output as one pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CausalConv1d(nn.Module):
    """``y_t = bias + sum_j weight[:, 0, j] * x_{t-(w-1)+j}`` per channel (zeros before t=0).

    Args:
        channels: ``D``.
        kernel_size: ``w``.
    """

    def __init__(self, channels: int, kernel_size: int = 4) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size: expected >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size))
        self.bias = nn.Parameter(torch.empty(channels))
        bound = 1.0 / math.sqrt(kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, tail: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Convolve a chunk of the stream.

        Args:
            x: ``[B, T, D]``.
            tail: ``[B, w-1, D]`` the last ``w-1`` inputs before ``x`` (zeros when None).

        Returns:
            ``y: [B, T, D]`` and the new tail ``[B, w-1, D]``.
        """
        B, _, D = x.shape
        if tail is None:
            tail = x.new_zeros(B, self.kernel_size - 1, D)
        xp = torch.cat((tail.to(x.dtype), x), dim=1)
        y = F.conv1d(xp.transpose(1, 2), self.weight, self.bias, groups=D).transpose(1, 2)
        return y, xp[:, xp.shape[1] - (self.kernel_size - 1) :]
