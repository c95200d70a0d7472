"""nn.Modules that own parameters and call a kernel: TTT mixers, attention, the block.

- ``BlockConfig``: typed configuration of a block and its mixer.
- ``TTTLinear`` / ``TTTMLP`` (state ``TTTLayerState``), ``CausalSelfAttention`` (``KVCache``),
  ``LaCT`` (large-chunk TTT with window attention, state ``LaCTLayerState``).
- ``Block`` (state ``BlockState``) with a pluggable mixer (``MIXERS``).
- ``RMSNorm``, ``SwiGLU``, ``CausalConv1d``, ``apply_rope`` / ``rope_cos_sin``.
"""

from ttt_video.layers.attention import CausalSelfAttention, KVCache
from ttt_video.layers.block import MIXERS, Block, BlockState, build_mixer
from ttt_video.layers.config import BlockConfig
from ttt_video.layers.conv import CausalConv1d
from ttt_video.layers.lact import LaCT, LaCTLayerState
from ttt_video.layers.mlp import SwiGLU
from ttt_video.layers.norms import RMSNorm
from ttt_video.layers.rope import apply_rope, rope_cos_sin
from ttt_video.layers.ttt import TTTMLP, TTTBase, TTTLayerState, TTTLinear

__all__ = [
    "MIXERS",
    "Block",
    "BlockConfig",
    "BlockState",
    "CausalConv1d",
    "CausalSelfAttention",
    "KVCache",
    "LaCT",
    "LaCTLayerState",
    "RMSNorm",
    "SwiGLU",
    "TTTBase",
    "TTTLayerState",
    "TTTLinear",
    "TTTMLP",
    "apply_rope",
    "build_mixer",
    "rope_cos_sin",
]
