"""One residual block with a pluggable sequence mixer (kernels/README.md section 9).

Letters: ``B`` batch, ``T`` tokens in this call, ``D`` model width, ``w`` conv width, ``s`` its
dilation.

    [pre_conv: h = h + conv(RMSNorm(h))] -> h = h + mixer(RMSNorm(h)) -> h = h + SwiGLU(RMSNorm(h))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ttt_video.layers.attention import CausalSelfAttention, KVCache
from ttt_video.layers.config import BlockConfig
from ttt_video.layers.conv import CausalConv1d
from ttt_video.layers.lact import LaCT, LaCTLayerState
from ttt_video.layers.mlp import SwiGLU
from ttt_video.layers.norms import RMSNorm
from ttt_video.layers.ttt import TTTMLP, TTTLayerState, TTTLinear

MIXERS: dict[str, type[nn.Module]] = {  # keys: config.MIXER_NAMES (tested)
    "ttt_linear": TTTLinear,
    "ttt_mlp": TTTMLP,
    "attention": CausalSelfAttention,
    "lact": LaCT,
}


def build_mixer(cfg: BlockConfig) -> nn.Module:
    """The sequence mixer named by ``cfg.mixer``; ``ValueError`` listing the valid names."""
    if cfg.mixer not in MIXERS:
        raise ValueError(f"mixer: unknown {cfg.mixer!r}; valid: {', '.join(MIXERS)}")
    return MIXERS[cfg.mixer](cfg)


@dataclass(frozen=True)
class BlockState:
    """Recurrent state of one block.

    Attributes:
        mixer: ``TTTLayerState`` (constant size), ``KVCache`` (grows with the stream; with
            ``attention_window``, bounded) or ``LaCTLayerState`` (fast weights and a window of
            keys and values: bounded).
        conv_tail: ``[B, (w-1) s, D]`` last inputs of the pre-conv (None without ``pre_conv``).
    """

    mixer: TTTLayerState | KVCache | LaCTLayerState
    conv_tail: Tensor | None

    @property
    def position(self) -> int:
        """Tokens consumed so far."""
        return self.mixer.position

    def nbytes(self) -> int:
        """Memory held by the state's tensors, in bytes."""
        tail = (
            0 if self.conv_tail is None else self.conv_tail.numel() * self.conv_tail.element_size()
        )
        return self.mixer.nbytes() + tail

    def detach(self) -> BlockState:
        """A copy cut from the autograd graph."""
        tail = None if self.conv_tail is None else self.conv_tail.detach()
        return BlockState(self.mixer.detach(), tail)


torch.export.register_dataclass(BlockState)


class Block(nn.Module):
    """Pre-norm residual block; see the module docstring."""

    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.pre_conv:
            self.conv_norm = RMSNorm(cfg.width, cfg.norm_eps)
            self.conv = CausalConv1d(cfg.width, cfg.conv_kernel, cfg.conv_dilation)
        self.seq_norm = RMSNorm(cfg.width, cfg.norm_eps)
        self.mixer = build_mixer(cfg)
        self.ffn_norm = RMSNorm(cfg.width, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.width, cfg.ffn_width)

    def forward(self, h: Tensor, state: BlockState | None = None) -> tuple[Tensor, BlockState]:
        """Apply the block to a chunk of the stream.

        Args:
            h: ``[B, T, D]`` residual stream.
            state: state after the previous chunk (None: start of the streams).

        Returns:
            ``h: [B, T, D]`` and the state after this chunk.
        """
        if self.cfg.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, h, state, use_reentrant=False)
        return self._forward(h, state)

    def _forward(self, h: Tensor, state: BlockState | None) -> tuple[Tensor, BlockState]:
        tail = None
        if self.cfg.pre_conv:
            y, tail = self.conv(self.conv_norm(h), None if state is None else state.conv_tail)
            h = h + y
        y, mixer_state = self.mixer(self.seq_norm(h), None if state is None else state.mixer)
        h = h + y
        h = h + self.mlp(self.ffn_norm(h))
        return h, BlockState(mixer_state, tail)
