"""Normalisation layers of the block: RMSNorm (pre-norms and the final norm).

Letters: ``B`` batch, ``T`` tokens, ``D`` model width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """``y = weight * x / sqrt(mean(x^2) + eps)`` over the last dimension, the normalisation
    computed in fp32 for fp16/bf16 inputs and returned in their dtype (``F.rms_norm``).

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
        return self.weight * F.rms_norm(x, (x.shape[-1],), eps=self.eps)
