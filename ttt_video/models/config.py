"""Typed configurations of the backbone and the language model.

Letters: ``D`` model width, ``H`` heads, ``V`` vocabulary size, ``L`` number of blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ttt_video.layers.config import BlockConfig
from ttt_video.validation import check_positive


@dataclass
class BackboneConfig(BlockConfig):
    """A stack of ``num_layers`` identical blocks plus a final RMSNorm (fields of
    ``BlockConfig`` describe each block)."""

    num_layers: int = 12
    """``L``, the number of blocks."""
    compile: bool = False
    """Run the model through ``torch.compile`` where a model is trained or served: the Lightning
    modules compile it in ``configure_model`` and ``ttt-video demo`` with ``--compile``. The
    first calls of each shape compile (seconds to minutes on a CPU); later calls run fused
    code. Weights and checkpoints are the same either way."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "num_layers", integer=True)


@dataclass
class LMConfig(BackboneConfig):
    """Language model: token embedding -> backbone -> RMSNorm -> head (tied by default)."""

    vocab_size: int = 32000
    """``V``."""
    tie_embeddings: bool = True
    """The output head reuses the embedding matrix (the paper's setting)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "vocab_size", integer=True)
