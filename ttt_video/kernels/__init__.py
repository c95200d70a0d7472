"""TTT kernels: pure functions on ``[B, T, H, d]`` tensors.

- ``ttt_linear`` / ``ttt_mlp``: a whole stream (or a packed batch, ``cu_seqlens``),
  ``impl="auto" | "naive" | "dual" | "triton"``.
- ``ttt_decode``: one token, primal form (``impl="auto" | "torch" | "triton"``).
- ``TTTState`` / ``initial_state``: the recurrent state carried between calls.

Chain of trust: ``naive`` (primal, per token, the ground truth) <= ``dual`` (PyTorch)
<= ``triton`` (GPU; tested on CPU in the Triton interpreter).
Derivations: ``kernels/README.md``.
"""

from ttt_video.kernels.api import IMPLS, ttt_decode, ttt_linear, ttt_mlp
from ttt_video.kernels.state import TTTState, initial_state

__all__ = ["IMPLS", "TTTState", "initial_state", "ttt_decode", "ttt_linear", "ttt_mlp"]
