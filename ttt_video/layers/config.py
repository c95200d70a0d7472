"""Typed configuration of one residual block and its sequence mixer.

Letters: ``D`` model width, ``H`` heads, ``d = D/H`` head dim, ``b`` TTT mini-batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ttt_video.kernels import check_impl
from ttt_video.validation import check_positive

MIXER_NAMES = ("ttt_linear", "ttt_mlp", "attention")


@dataclass
class BlockConfig:
    """One residual block: ``[pre-conv] -> h + mixer(RMSNorm(h)) -> h + SwiGLU(RMSNorm(h))``.

    The defaults are the paper's TTT-Linear "M" (Mamba-backbone) block at 125M width.
    """

    POSITIVE_INTS: ClassVar[tuple[str, ...]] = (
        "width",
        "num_heads",
        "ffn_width",
        "conv_kernel",
        "mini_batch_size",
    )
    """Fields that must be ints > 0 (a subclass that derives one of them checks it itself)."""

    width: int = 768
    """``D``, the model width."""
    num_heads: int = 12
    """``H``; ``D`` must be divisible by it (and ``d = D/H`` even, for RoPE)."""
    ffn_width: int = 2048
    """Hidden width of the SwiGLU feed-forward network."""
    mixer: str = "ttt_linear"
    """Sequence mixer: ``"ttt_linear"``, ``"ttt_mlp"`` or ``"attention"``."""
    pre_conv: bool = True
    """M backbone: a ``h + conv(RMSNorm(h))`` sub-block (depthwise causal) before the mixer."""
    share_qk: bool = True
    """M backbone: one shared Q/K projection followed by two depthwise causal convs."""
    use_gate: bool = True
    """M backbone: multiply the TTT output by ``gelu_tanh(x thetaG)`` before ``o_proj``."""
    conv_kernel: int = 4
    """Width of the causal convolutions (pre-conv and the Q/K convs)."""
    mini_batch_size: int = 16
    """``b``, the TTT mini-batch size."""
    ttt_base_lr: float | None = None
    """Inner learning-rate scale; None picks the paper's 1.0 (TTT-Linear) or 0.1 (TTT-MLP)."""
    rope_theta: float = 10000.0
    """RoPE frequency base."""
    norm_eps: float = 1e-6
    """Epsilon of the RMSNorms."""
    init_std: float = 0.02
    """Standard deviation of the normal init of every Linear, the embedding and W1/W2."""
    impl: str = "auto"
    """TTT kernel backend, one of ``kernels.IMPLS``: ``"auto"``, ``"naive"`` (slow reference),
    ``"dual"`` or ``"triton"``; used on every path, one-token decode steps included."""
    gradient_checkpointing: bool = False
    """Recompute each block in the backward (``torch.utils.checkpoint``, non-reentrant)."""
    causal: bool = True
    """False: the video variant's non-causal mini-batches (``E[i, j] = lam_j / b``, no tau)."""
    qk_l2_norm: bool = False
    """Video variant: L2-normalise q and k per head before RoPE."""
    target_ln: bool = False
    """Video variant: the inner target becomes ``LN(v - k)`` (with the inner LN's affine)."""
    bidirectional: bool = False
    """Video variant: add a second TTT pass over the reversed stream (non-causal only)."""
    residual_gate: bool = False
    """Video variant: scale the mixer output by ``tanh(alpha)`` (``alpha: [D]``, init 0.1)."""

    def __post_init__(self) -> None:
        check_positive(self, *self.POSITIVE_INTS, integer=True)
        if self.width % self.num_heads:
            raise ValueError(f"width: {self.width} is not divisible by num_heads={self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"num_heads: head dim {self.head_dim} must be even for RoPE")
        if self.mixer not in MIXER_NAMES:
            raise ValueError(f"mixer: unknown {self.mixer!r}; valid: {', '.join(MIXER_NAMES)}")
        check_impl(self.impl)
        check_positive(self, "norm_eps", "init_std", "rope_theta")
        check_positive(self, "ttt_base_lr", allow_none=True)
        if self.bidirectional and self.causal:
            raise ValueError("bidirectional: needs causal=False (a causal model cannot see ahead)")

    @property
    def head_dim(self) -> int:
        """``d = D / H``."""
        return self.width // self.num_heads

    @property
    def base_lr(self) -> float:
        """The inner learning-rate scale after applying the per-mixer default."""
        if self.ttt_base_lr is not None:
            return self.ttt_base_lr
        return 0.1 if self.mixer == "ttt_mlp" else 1.0
