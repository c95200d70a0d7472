"""nn.Modules that own parameters and call a kernel: TTT mixers, attention, the block.

- ``BlockConfig``: typed configuration of a block and its mixer.
- ``TTTLinear`` / ``TTTMLP`` (state ``TTTLayerState``), ``CausalSelfAttention`` (``KVCache``).
- ``Block`` (state ``BlockState``) with a pluggable mixer (``MIXERS``).
- ``RMSNorm``, ``SwiGLU``, ``CausalConv1d``, ``apply_rope`` / ``rope_cos_sin``.
"""

from .attention import CausalSelfAttention, KVCache
from .block import MIXERS, Block, BlockState, build_mixer
from .config import BlockConfig
from .conv import CausalConv1d
from .mlp import SwiGLU
from .norms import RMSNorm
from .rope import apply_rope, rope_cos_sin
from .ttt import TTTMLP, TTTBase, TTTLayerState, TTTLinear

__all__ = [
    "MIXERS",
    "Block",
    "BlockConfig",
    "BlockState",
    "CausalConv1d",
    "CausalSelfAttention",
    "KVCache",
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
