"""The block stack shared by the language model and the video models.

Letters: ``B`` batch, ``T`` tokens in this call, ``D`` model width, ``L`` blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_leaves

from ttt_video.layers import Block, BlockConfig, BlockState, RMSNorm
from ttt_video.models.config import BackboneConfig


@dataclass(frozen=True)
class BackboneState:
    """Recurrent state of the whole stack: one ``BlockState`` per block.

    Fixed size for TTT mixers (``nbytes()`` does not grow with ``position``); the attention
    baseline's KV caches grow linearly, or up to ``attention_window`` tokens.
    """

    blocks: tuple[BlockState, ...]

    @property
    def position(self) -> int:
        """Tokens consumed so far."""
        return self.blocks[0].position

    def nbytes(self) -> int:
        """Memory held by the state's tensors, in bytes."""
        return sum(b.nbytes() for b in self.blocks)

    def detach(self) -> BackboneState:
        """A copy cut from the autograd graph (truncated back-propagation through time)."""
        return BackboneState(tuple(b.detach() for b in self.blocks))


torch.export.register_dataclass(BackboneState)


def block_config(cfg: BackboneConfig) -> BlockConfig:
    """The ``BlockConfig`` part of a (backbone or LM) config."""
    return BlockConfig(**{f.name: getattr(cfg, f.name) for f in fields(BlockConfig)})


def init_linear_weights(module: nn.Module, std: float) -> None:
    """Normal(0, std) init of every ``nn.Linear`` / ``nn.Embedding`` weight in ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


class Backbone(nn.Module):
    """``L`` residual blocks and a final RMSNorm on embeddings ``[B, T, D]``."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        bcfg = block_config(cfg)
        self.blocks = nn.ModuleList(Block(bcfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.width, cfg.norm_eps)
        init_linear_weights(self, cfg.init_std)

    def forward(
        self, h: Tensor, state: BackboneState | None = None
    ) -> tuple[Tensor, BackboneState]:
        """Run a chunk of the streams through the stack.

        Args:
            h: ``[B, T, D]`` embeddings.
            state: state after the previous chunk (None: start of the streams).

        Returns:
            ``[B, T, D]`` normalised features and the state after this chunk.
        """
        states = [None] * len(self.blocks) if state is None else state.blocks
        if len(states) != len(self.blocks):
            raise ValueError(f"state: has {len(states)} blocks, the backbone {len(self.blocks)}")
        if state is None or torch.compiler.is_compiling():
            return self._run(h, states)
        try:
            return self._run(h, states)
        except (RuntimeError, ValueError) as err:
            # a state of other streams fails somewhere inside a block; name it instead (checked
            # only on failure: the check costs ~40 us, 2% of an eager decoding step)
            streams = {t.shape[0] for t in tree_leaves(state) if isinstance(t, Tensor)}
            if streams - {h.shape[0]}:
                raise ValueError(
                    f"state: carries {'/'.join(map(str, sorted(streams)))} streams, the input "
                    f"{h.shape[0]} (B must stay the same from chunk to chunk)"
                ) from err
            raise

    def _run(self, h: Tensor, states: list) -> tuple[Tensor, BackboneState]:
        """The blocks, then the final norm, from one ``BlockState`` (or None) per block."""
        new = []
        for block, s in zip(self.blocks, states):
            h, s = block(h, s)
            new.append(s)
        return self.norm(h), BackboneState(tuple(new))
