"""TTT kernels: pure functions on ``[B, T, H, d]`` tensors.

- ``ttt_linear`` / ``ttt_mlp``: a whole stream (or a packed batch, ``cu_seqlens``).
- ``ttt_decode``: one token, primal form.
- ``IMPLS`` / ``Impl`` / ``check_impl``: the one ``impl=`` vocabulary of every entry point,
  layer and config: ``"auto" | "naive" | "dual" | "triton"`` (``api`` module docstring).
- ``TTTState`` / ``initial_state``: the recurrent state carried between calls.

Chain of trust: ``naive`` (primal, per token, the ground truth) <= ``dual`` (PyTorch)
<= ``triton`` (GPU; tested on CPU in the Triton interpreter).
Derivations: ``kernels/README.md``.
"""

from ttt_video.kernels.api import IMPLS, Impl, check_impl, ttt_decode, ttt_linear, ttt_mlp
from ttt_video.kernels.state import TTTState, initial_state

__all__ = [
    "IMPLS",
    "Impl",
    "TTTState",
    "check_impl",
    "initial_state",
    "ttt_decode",
    "ttt_linear",
    "ttt_mlp",
]
