"""Causal multi-head self-attention: the Transformer baseline, with a KV cache for decoding.

Letters: ``B`` batch, ``T`` tokens in this call, ``S`` tokens in the cache before the call,
``D`` model width, ``H`` heads, ``d = D/H`` head dim. RoPE (adjacent pairs, as in the TTT
layers) uses absolute positions ``S..S+T-1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttt_video.layers.config import BlockConfig
from ttt_video.layers.rope import apply_rope, rope_cos_sin


@dataclass(frozen=True)
class KVCache:
    """Keys and values of every token so far: ``k, v: [B, H, S, d]`` (grows with ``S``)."""

    k: Tensor
    v: Tensor

    @property
    def position(self) -> int:
        """``S``, tokens consumed so far."""
        return self.k.shape[2]

    def nbytes(self) -> int:
        """Memory held by the cache, in bytes (linear in ``S``)."""
        return 2 * self.k.numel() * self.k.element_size()

    def detach(self) -> KVCache:
        """A copy cut from the autograd graph."""
        return KVCache(self.k.detach(), self.v.detach())


torch.export.register_dataclass(KVCache)


class CausalSelfAttention(nn.Module):
    """``y = o_proj(softmax(q k^T / sqrt(d) + causal mask) v)`` with bias-free projections."""

    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        D = cfg.width
        self.num_heads, self.head_dim, self.rope_theta = cfg.num_heads, cfg.head_dim, cfg.rope_theta
        self.q_proj = nn.Linear(D, D, bias=False)
        self.k_proj = nn.Linear(D, D, bias=False)
        self.v_proj = nn.Linear(D, D, bias=False)
        self.o_proj = nn.Linear(D, D, bias=False)

    def forward(self, x: Tensor, state: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """Attend from ``x: [B, T, D]`` to the cache and ``x`` itself.

        Returns:
            ``y: [B, T, D]`` and the cache extended by ``T`` tokens.
        """
        B, T, D = x.shape
        S = 0 if state is None else state.position
        shape = (B, T, self.num_heads, self.head_dim)
        q, k, v = (p(x).view(shape) for p in (self.q_proj, self.k_proj, self.v_proj))
        cos, sin = rope_cos_sin(
            torch.arange(S, S + T, device=x.device), self.head_dim, self.rope_theta, q.dtype
        )
        q, k, v = (
            apply_rope(q, cos, sin).transpose(1, 2),
            apply_rope(k, cos, sin).transpose(1, 2),
            v.transpose(1, 2),
        )
        if state is not None:
            k, v = torch.cat((state.k, k), dim=2), torch.cat((state.v, v), dim=2)
        if S == 0:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif T == 1:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            rows = torch.arange(S, S + T, device=x.device)[:, None]
            mask = torch.arange(S + T, device=x.device)[None, :] <= rows
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, D)), KVCache(k, v)
