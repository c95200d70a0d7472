"""The LaCT sequence mixer (large-chunk TTT, arXiv 2505.23884; kernels/README.md section 13):
SwiGLU fast weights updated once per chunk, with sliding-window attention in the same layer.

Letters: ``B`` batch, ``T`` tokens in this call, ``D`` model width, ``H`` attention heads,
``h = D/H`` attention head dim, ``Hf`` fast-weight heads, ``d = D/Hf`` their head dim,
``m`` fast-weight hidden width, ``C`` chunk size (``cfg.mini_batch_size``), ``W`` window
(``cfg.lact_window``), ``S <= W`` tokens of the window's key/value tail, ``P`` tokens before
this call.

One call maps ``x: [B, T, D]`` (the block's RMSNorm output) to ``y: [B, T, D]``::

    q, k, v = x thetaQ, x thetaK, x thetaV                          (shared by both branches)
    a       = window_attention(RoPE(q), RoPE(k), v)                 (W > 0; heads H)
    qf, kf  = L2norm(silu(q o s_q + c_q)), L2norm(silu(k o s_k + c_k))   (heads Hf)
    vf      = silu(v) ;  eta = softplus(x w + b)  [B, T, Hf, 3]
    o       = lact(qf, kf, vf, eta)                                 (kernels/lact)
    y       = o_proj(a + RMSNorm_d(o))

``s, c: [2, D]`` are a per-channel affine of the fast-weight branch's q and k (init 1 and 0,
as in the authors' layer), so that the two branches can read different features from the
shared projections; the fast-weight branch has no RoPE. The initial fast weights ``W1, W2,
W3`` are parameters (normal, std ``1/sqrt(fan_in)``). The state carries the fast-weight state
(weights, accumulated gradient of the current chunk, momentum), the window's key/value tail
and the absolute position, so a stream fed in pieces, or token by token, gives the result of
one call. ``causal=False`` (video) updates each chunk with the whole chunk before reading it,
and its attention lets a chunk see itself whole; such a stream can be cut at chunk borders only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttt_video.kernels.lact import LaCTState, lact, lact_initial_state
from ttt_video.layers.attention import window_attention
from ttt_video.layers.config import BlockConfig
from ttt_video.layers.norms import RMSNorm
from ttt_video.layers.rope import apply_rope, rope_cos_sin


@dataclass(frozen=True)
class LaCTLayerState:
    """Recurrent state of one LaCT layer for a batch of streams.

    Attributes:
        fast: the fast-weight state (``kernels.lact.LaCTState``).
        window: ``(k, v)``, each ``[B, H, S, h]``: keys (RoPE applied) and values of the last
            ``S <= W`` tokens (None without the attention branch).
        position: tokens consumed so far in the stream (absolute).
    """

    fast: LaCTState
    window: tuple[Tensor, Tensor] | None
    position: int

    def nbytes(self) -> int:
        """Memory held by the state's tensors, in bytes (bounded: at most ``W`` tokens of K/V)."""
        window = sum(t.numel() * t.element_size() for t in self.window or ())
        return self.fast.nbytes() + window

    def detach(self) -> LaCTLayerState:
        """A copy cut from the autograd graph."""
        window = None if self.window is None else tuple(t.detach() for t in self.window)
        return LaCTLayerState(self.fast.detach(), window, self.position)


torch.export.register_dataclass(LaCTLayerState)


def inverse_softplus(y: float) -> float:
    """``x`` with ``softplus(x) = y`` (``y > 0``)."""
    return y + math.log(-math.expm1(-y))


class LaCT(nn.Module):
    """Large-chunk TTT mixer with in-layer window attention (module docstring)."""

    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, Hf, m = cfg.width, cfg.lact_heads, cfg.lact_hidden_width
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.fast_heads, self.fast_dim = Hf, D // Hf
        d = self.fast_dim
        self.q_proj = nn.Linear(D, D, bias=False)
        self.k_proj = nn.Linear(D, D, bias=False)
        self.v_proj = nn.Linear(D, D, bias=False)
        self.o_proj = nn.Linear(D, D, bias=False)
        self.fast_qk_scale = nn.Parameter(torch.ones(2, D))
        self.fast_qk_offset = nn.Parameter(torch.zeros(2, D))
        self.lr_weight = nn.Parameter(torch.randn(3 * Hf, D) * cfg.init_std)
        self.lr_bias = nn.Parameter(torch.full((3 * Hf,), inverse_softplus(cfg.lact_lr_init)))
        self.W1 = nn.Parameter(torch.randn(Hf, m, d) / math.sqrt(d))
        self.W2 = nn.Parameter(torch.randn(Hf, d, m) / math.sqrt(m))
        self.W3 = nn.Parameter(torch.randn(Hf, m, d) / math.sqrt(d))
        self.fast_norm = RMSNorm(d, cfg.norm_eps)
        self.residual_alpha = nn.Parameter(torch.full((D,), 0.1)) if cfg.residual_gate else None

    def initial_state(self, batch_size: int) -> LaCTLayerState:
        """Fresh state at the start of ``batch_size`` streams."""
        weights = (self.W1, self.W2, self.W3)
        fast = lact_initial_state(weights, batch_size, self.cfg.lact_momentum > 0)
        return LaCTLayerState(fast, None, 0)

    def learning_rate(self, x: Tensor) -> Tensor:
        """``eta = softplus(x w + b): [B, T, Hf, 3]`` (float32 or wider) from ``x: [B, T, D]``."""
        logits = F.linear(x, self.lr_weight, self.lr_bias)
        eta = F.softplus(logits.to(torch.promote_types(logits.dtype, torch.float32)))
        return eta.view(*x.shape[:2], self.fast_heads, 3)

    def fast_views(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[B, T, D]`` projections -> the fast-weight branch's ``qf, kf, vf: [B, T, Hf, d]``."""
        shape = (*q.shape[:2], self.fast_heads, self.fast_dim)
        q = F.silu(q * self.fast_qk_scale[0] + self.fast_qk_offset[0])
        k = F.silu(k * self.fast_qk_scale[1] + self.fast_qk_offset[1])
        q, k = (F.normalize(t.view(shape), dim=-1) for t in (q, k))
        return q, k, F.silu(v).view(shape)

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, state: LaCTLayerState
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The window-attention branch: ``[B, T, D]`` projections -> ``[B, T, D]`` and the tail."""
        B, T, D = q.shape
        shape = (B, T, self.num_heads, self.head_dim)
        pos = torch.arange(state.position, state.position + T, device=q.device)
        cos, sin = rope_cos_sin(pos, self.head_dim, self.cfg.rope_theta, q.dtype)
        q, k = apply_rope(q.view(shape), cos, sin), apply_rope(k.view(shape), cos, sin)
        o, tail = window_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.view(shape).transpose(1, 2),
            state.window,
            state.fast.position,
            self.cfg.lact_window,
            self.cfg.mini_batch_size,
            self.cfg.causal,
        )
        return o.transpose(1, 2).reshape(B, T, D), tail

    def forward(
        self, x: Tensor, state: LaCTLayerState | None = None
    ) -> tuple[Tensor, LaCTLayerState]:
        """Mix a chunk of the stream.

        Args:
            x: ``[B, T, D]`` the block's normalised input.
            state: the state after the previous call (None: start of the streams).

        Returns:
            ``y: [B, T, D]`` and the state after this call.
        """
        B, T, D = x.shape
        cfg = self.cfg
        state = state if state is not None else self.initial_state(B)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        qf, kf, vf = self.fast_views(q, k, v)
        o, fast = lact(
            qf,
            kf,
            vf,
            self.learning_rate(x),
            chunk_size=cfg.mini_batch_size,
            causal=cfg.causal,
            momentum=cfg.lact_momentum,
            muon=cfg.lact_muon,
            initial_state=state.fast,
            output_final_state=True,
            impl="naive" if cfg.impl == "naive" else "chunked",
        )
        y = self.fast_norm(o).reshape(B, T, D)
        tail = None
        if cfg.lact_window > 0:
            a, tail = self.attention(q, k, v, state)
            y = y + a
        y = self.o_proj(y)
        if self.residual_alpha is not None:
            y = torch.tanh(self.residual_alpha) * y
        return y, LaCTLayerState(fast, tail, state.position + T)
