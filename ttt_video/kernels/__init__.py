"""TTT kernels: pure functions on ``[B, T, H, d]`` tensors.

- ``ttt_linear`` / ``ttt_mlp``: a whole stream, ``impl="auto" | "naive" | "dual"``.
- ``ttt_decode``: one token, primal form.
- ``TTTState`` / ``initial_state``: the recurrent state carried between calls.

Chain of trust: ``naive`` (primal, per token, the ground truth) <= ``dual`` (PyTorch).
Derivations: ``kernels/README.md``.
"""

from .api import IMPLS, ttt_decode, ttt_linear, ttt_mlp
from .state import TTTState, initial_state

__all__ = ["IMPLS", "TTTState", "initial_state", "ttt_decode", "ttt_linear", "ttt_mlp"]
