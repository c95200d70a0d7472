"""Depthwise causal convolution over time, with the tail of past inputs as recurrent state.

Letters: ``B`` batch, ``T`` tokens, ``D`` channels, ``w`` kernel width, ``s`` dilation (the
spacing of the taps in tokens). The weight has the ``nn.Conv1d`` layout ``[D, 1, w]``; tap
``w-1`` multiplies the current input and tap ``j`` the input ``(w-1-j) s`` steps back, so a
stream cut anywhere and resumed with the tail (the last ``(w-1) s`` inputs) gives the same
output as one pass. A video model's frame-major stream of ``N`` tokens per frame with
``s = N`` convolves each patch over its own last ``w`` frames.

The convolution is computed as ``w`` fused multiply-adds over shifted views of the padded
input (one product and a sum for a single token; ``causal_conv``): for the few taps and the
short chunks of a streaming call this is several times faster on CPU than ``F.conv1d``'s
depthwise path, and it convolves one input with several filters at once (the Q and K convs
of a TTT layer). The taps after the first accumulate in place: on a long chunk a new output
per tap costs a fresh allocation, whose first touch is most of its time (the Q/K conv of
the 125m-width LM at B = 2, T = 2048: 3 ms in place against 17-19 ms, two threads).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def causal_conv(xp: Tensor, taps: Tensor, bias: Tensor, dilation: int = 1) -> Tensor:
    """``y_t = bias + sum_j taps[j] * xp[t + j s]`` over a padded input (``s = dilation``).

    Args:
        xp: ``[B, T + (w - 1) s, ..., D]`` the ``(w - 1) s`` inputs before the chunk, then the
            chunk.
        taps: ``[w, ..., D]`` (``taps[w-1]`` multiplies the current input).
        bias: broadcastable to ``taps[0]``.
        dilation: ``s``.

    Returns:
        ``y: [B, T, ..., D]`` (the ``...`` of ``taps`` broadcast against those of ``xp``).
    """
    w, s = taps.shape[0], dilation
    T = xp.shape[1] - (w - 1) * s
    if T == 1:  # a decode step: one product over the window
        return (xp[:, ::s] * taps).sum(1, keepdim=True) + bias
    y = torch.addcmul(bias, xp[:, :T], taps[0])
    for j in range(1, w):
        y.addcmul_(xp[:, j * s : j * s + T], taps[j])  # in place (module docstring)
    return y


def pad_with_tail(x: Tensor, tail: Tensor | None, width: int) -> Tensor:
    """``[B, width, D]`` tail (zeros when None) then ``x: [B, T, D]``: ``[B, width + T, D]``."""
    if tail is None:
        return F.pad(x, (0, 0, width, 0))
    return torch.cat((tail.to(x.dtype), x), dim=1)


class CausalConv1d(nn.Module):
    """``y_t = bias + sum_j weight[:, 0, j] * x_{t-(w-1-j)s}`` per channel (zeros before t=0).

    Args:
        channels: ``D``.
        kernel_size: ``w``.
        dilation: ``s``, the spacing of the taps in tokens.
    """

    def __init__(self, channels: int, kernel_size: int = 4, dilation: int = 1) -> None:
        super().__init__()
        if kernel_size < 1 or dilation < 1:
            raise ValueError(f"kernel_size/dilation: expected >= 1, got {kernel_size}/{dilation}")
        self.kernel_size, self.dilation = kernel_size, dilation
        self.tail_len = (kernel_size - 1) * dilation
        """Inputs the next chunk needs from this one: ``(w - 1) s``."""
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size))
        self.bias = nn.Parameter(torch.empty(channels))
        bound = 1.0 / math.sqrt(kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def taps(self) -> Tensor:
        """The weight as taps ``[w, D]`` (a view)."""
        return self.weight[:, 0].t()

    def forward(self, x: Tensor, tail: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Convolve a chunk of the stream.

        Args:
            x: ``[B, T, D]``.
            tail: ``[B, (w-1) s, D]`` the last ``(w-1) s`` inputs before ``x`` (zeros when
                None).

        Returns:
            ``y: [B, T, D]`` and the new tail ``[B, (w-1) s, D]``.
        """
        xp = pad_with_tail(x, tail, self.tail_len)
        return causal_conv(xp, self.taps(), self.bias, self.dilation), xp[:, x.shape[1] :]
