"""Triton kernels of the TTT layers (GPU; on CPU only under ``TRITON_INTERPRET=1``).

- ``ttt_triton``: TTT-Linear / TTT-MLP over a stream or a packed batch (``cu_seqlens``),
  forward and backward, the contract of ``dual.ttt_dual``.
- ``ttt_decode_triton`` / ``decode_step_``: one token, the state copied / updated in place.

Reached through ``ttt_linear`` / ``ttt_mlp`` with ``impl="triton"`` (or ``"auto"`` on CUDA).
Layout and GPU constraints: ``kernels/README.md``, section "Triton".
"""

from ttt_video.kernels.triton.decode import decode_step_, ttt_decode_triton
from ttt_video.kernels.triton.scan import ttt_triton

__all__ = ["decode_step_", "ttt_decode_triton", "ttt_triton"]
