"""The block's feed-forward network.

Letters: ``B`` batch, ``T`` tokens, ``D`` model width, ``F`` hidden width.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``, bias-free.

    Args:
        width: ``D``.
        hidden: ``F``.
    """

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(width, hidden, bias=False)
        self.up_proj = nn.Linear(width, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [..., D] -> [..., D]``."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
