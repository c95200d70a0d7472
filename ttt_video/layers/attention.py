"""Causal multi-head self-attention: the Transformer baseline, with a KV cache for decoding,
full or over a sliding window.

Letters: ``B`` batch, ``T`` tokens in this call, ``P`` tokens of the stream before the call,
``S`` tokens in the cache (``P``, or at most ``W`` with a window), ``W`` window
(``cfg.attention_window``), ``D`` model width, ``H`` heads, ``d = D/H`` head dim. RoPE
(adjacent pairs, as in the TTT layers) uses absolute positions ``P..P+T-1``.

Full attention (``W = 0``): token ``t`` sees every token ``s <= t``; the cache grows with the
stream and a step costs ``O(P)``. Sliding window (``W > 0``): token ``t`` sees ``t - W < s <= t``;
the cache keeps the last ``W`` keys and values, so memory and the cost per token stay constant
however long the stream, and a call of ``T`` tokens costs ``O(T W)`` (blocks of ``W`` queries
in one batched call, ``window_attention``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttt_video.kernels.lact import chunk_segments
from ttt_video.layers.config import BlockConfig
from ttt_video.layers.rope import apply_rope, rope_cos_sin


@dataclass(frozen=True)
class KVCache:
    """Keys (RoPE applied) and values ``k, v: [B, H, S, d]`` of the tokens a next token may see:
    every token so far (``S = position``, growing), or the last ``S <= W`` with a window.

    Attributes:
        position: ``P``, tokens consumed so far in the stream (absolute).
    """

    k: Tensor
    v: Tensor
    position: int

    def nbytes(self) -> int:
        """Memory held by the cache, in bytes (linear in ``S``)."""
        return 2 * self.k.numel() * self.k.element_size()

    def detach(self) -> KVCache:
        """A copy cut from the autograd graph."""
        return KVCache(self.k.detach(), self.v.detach(), self.position)


torch.export.register_dataclass(KVCache)


def window_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    tail: tuple[Tensor, Tensor] | None,
    chunk_position: int,
    window: int,
    chunk_size: int,
    causal: bool,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Sliding-window softmax attention over a call's tokens and the tail of the previous ones.

    Causal: token ``t`` sees tokens ``t - W < s <= t`` (``_causal_window``: all blocks of
    queries in one batched call). Non-causal: a token of the chunk ``[c, c + C)`` sees tokens
    ``c - W <= s < c + C`` (its chunk whole and the ``W`` before it), one chunk segment at a
    time.

    Args:
        q, k, v: ``[B, H, T, h]`` (RoPE already applied to ``q`` and ``k``).
        tail: ``(k, v)`` of the ``S <= W`` tokens before the call, or None (``S = 0``).
        chunk_position: tokens of the current chunk consumed before the call (non-causal only;
            0 there, since a non-causal call starts at a chunk border).
        window: ``W >= 1``.
        chunk_size: ``C`` (non-causal: the chunk of the masking rule; causal: unused).
        causal: the masking rule above.

    Returns:
        ``o: [B, H, T, h]`` and the new tail (the last ``min(W, S + T)`` keys and values).
    """
    if q.shape[2] == 0:
        raise ValueError("q: the call has no tokens (T = 0)")
    keys, values = k, v
    if tail is not None:
        keys, values = torch.cat((tail[0], k), dim=2), torch.cat((tail[1], v), dim=2)
    S = keys.shape[2] - k.shape[2]
    if causal:
        o = _causal_window(q, keys, values, window)
    else:
        outs = []
        for a, b in chunk_segments(chunk_position, q.shape[2], chunk_size):
            # key j of `keys` is token j - S of the call; query i is token i
            lo = max(0, S + a - window)
            outs.append(
                F.scaled_dot_product_attention(
                    q[:, :, a:b], keys[:, :, lo : S + b], values[:, :, lo : S + b]
                )
            )
        o = torch.cat(outs, dim=2)
    # copies: a view would keep the whole call's keys and values alive with the state
    return o, (keys[:, :, -window:].clone(), values[:, :, -window:].clone())


def _causal_window(q: Tensor, keys: Tensor, values: Tensor, window: int) -> Tensor:
    """Causal sliding-window attention of ``q: [B, H, T, h]`` over ``keys, values: [B, H,
    S + T, h]`` (the last ``T`` are the queries' own tokens, ``S <= W`` come before them).

    ``T <= W``: one attention call over the keys as they are. Longer calls: the queries are cut
    into ``n = ceil(T / W)`` blocks of ``m = ceil(T / n) <= W`` (the last one padded by fewer
    than ``n``), and block ``j`` attends to the ``W + m`` keys that end with it: a strided
    view of the keys padded by ``W - S`` in front, under one ``[m, W + m]`` band mask (query
    ``i`` sees key ``i < j' <= i + W``) and, where a block's keys reach into the front padding,
    a mask of it. All blocks go to the attention kernel in one call: its cost is
    ``O(T (W + m))`` and its graph does not grow with ``T``.
    """
    B, H, T, h = q.shape
    S, n = keys.shape[2] - T, -(-T // window)
    i = torch.arange(-(-T // n), device=q.device)[:, None]
    if n == 1:
        j = torch.arange(S + T, device=q.device)
        mask = (j > i + S - window) & (j <= i + S)  # [T, S + T]
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    m = i.shape[0]
    pad = (0, 0, window - S, n * m - T)  # [W - S front | keys | queries' padding]
    # blocks in the batch dim, [B n, H, ., h]: one call of the fused attention kernel, and the
    # mask broadcasts over the heads (a mask per head would cost more than the attention)
    blocks = F.pad(q, pad[:2] + (0, n * m - T)).unflatten(2, (n, m)).transpose(1, 2)
    slabs = [F.pad(t, pad).unfold(2, window + m, m).permute(0, 2, 1, 4, 3) for t in (keys, values)]
    j = torch.arange(window + m, device=q.device)
    mask = (j > i) & (j <= i + window)  # [m, W + m]
    if S < window:  # the front padding is in the keys of the first ceil((W - S) / m) blocks
        real = torch.arange(n, device=q.device)[:, None] * m + j >= window - S  # [n, W + m]
        mask = (mask & real[:, None, :])[:, None].repeat(B, 1, 1, 1)  # [B n, 1, m, W + m]
    o = F.scaled_dot_product_attention(
        *(t.reshape(B * n, H, -1, h) for t in (blocks, *slabs)), attn_mask=mask
    )  # [B n, H, m, h]
    return o.view(B, n, H, m, h).transpose(1, 2).reshape(B, H, n * m, h)[:, :, :T]


class CausalSelfAttention(nn.Module):
    """``y = o_proj(softmax(q k^T / sqrt(d) + mask) v)`` with bias-free projections; the mask is
    causal, over the whole stream or the last ``cfg.attention_window`` tokens (module docstring)."""

    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        D = cfg.width
        self.window = cfg.attention_window
        self.num_heads, self.head_dim, self.rope_theta = cfg.num_heads, cfg.head_dim, cfg.rope_theta
        self.q_proj = nn.Linear(D, D, bias=False)
        self.k_proj = nn.Linear(D, D, bias=False)
        self.v_proj = nn.Linear(D, D, bias=False)
        self.o_proj = nn.Linear(D, D, bias=False)

    def forward(self, x: Tensor, state: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """Attend from ``x: [B, T, D]`` to the cache and ``x`` itself.

        Returns:
            ``y: [B, T, D]`` and the cache extended by ``T`` tokens (with a window, its last
            ``W``).
        """
        B, T, D = x.shape
        P = 0 if state is None else state.position
        shape = (B, T, self.num_heads, self.head_dim)
        q, k, v = (p(x).view(shape) for p in (self.q_proj, self.k_proj, self.v_proj))
        cos, sin = rope_cos_sin(
            torch.arange(P, P + T, device=x.device), self.head_dim, self.rope_theta, q.dtype
        )
        q, k, v = (
            apply_rope(q, cos, sin).transpose(1, 2),
            apply_rope(k, cos, sin).transpose(1, 2),
            v.transpose(1, 2),
        )
        if self.window:
            tail = None if state is None else (state.k, state.v)
            o, (k, v) = window_attention(q, k, v, tail, 0, self.window, self.window, causal=True)
            return self.o_proj(o.transpose(1, 2).reshape(B, T, D)), KVCache(k, v, P + T)
        if state is not None:
            k, v = torch.cat((state.k, k), dim=2), torch.cat((state.v, v), dim=2)
        if P == 0:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif T == 1:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            rows = torch.arange(P, P + T, device=x.device)[:, None]
            mask = torch.arange(P + T, device=x.device)[None, :] <= rows
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, D)), KVCache(k, v, P + T)
