"""Normalisation layers of the block: RMSNorm (pre-norms and the final norm).

Letters: ``B`` batch, ``T`` tokens, ``D`` model width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """``y = weight * x / sqrt(mean(x^2) + eps)`` over the last dimension, computed in fp32.

    Args:
        width: ``D``.
        eps: added to the mean square (1e-6 in the paper).
    """

    def __init__(self, width: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: Tensor) -> Tensor:
        """``x: [..., D] -> [..., D]`` (dtype of ``x``)."""
        x32 = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * y.to(x.dtype)
