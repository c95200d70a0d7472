"""Typed configuration of one residual block and its sequence mixer.

Letters: ``D`` model width, ``H`` heads, ``d = D/H`` head dim, ``b`` TTT mini-batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ttt_video.kernels import check_impl
from ttt_video.validation import check_positive

MIXER_NAMES = ("ttt_linear", "ttt_mlp", "attention", "lact")


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
        "conv_dilation",
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
    """Sequence mixer: ``"ttt_linear"``, ``"ttt_mlp"``, ``"attention"`` or ``"lact"`` (large-chunk
    TTT with window attention, ``layers/lact.py``; its settings are the ``lact_*`` fields)."""
    pre_conv: bool = True
    """M backbone: a ``h + conv(RMSNorm(h))`` sub-block (depthwise causal) before the mixer."""
    share_qk: bool = True
    """M backbone: one shared Q/K projection followed by two depthwise causal convs."""
    use_gate: bool = True
    """M backbone: multiply the TTT output by ``gelu_tanh(x thetaG)`` before ``o_proj``."""
    conv_kernel: int = 4
    """Width of the causal convolutions (pre-conv and the Q/K convs)."""
    conv_dilation: int = 1
    """Spacing of those convolutions' taps in tokens (``layers/conv.py``): 1 for text; a video
    model with ``temporal_conv`` sets its tokens per frame, so that each patch is convolved
    with the same patch in the frames before it."""
    mini_batch_size: int = 16
    """``b``, the TTT mini-batch size; for ``"lact"`` the chunk size ``C`` (tokens per update)."""
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
    ``"dual"`` or ``"triton"``; used on every path, one-token decode steps included. ``"lact"``
    runs its ``"naive"`` form for ``"naive"``, its ``"chunked"`` form otherwise (no Triton form)."""
    keep_inner_norm: bool = False
    """TTT-Linear/TTT-MLP: at each mini-batch commit, rescale every inner layer's ``(W, b)``,
    per stream and head, to its norm before the commit, so that the inner weights keep the norm
    of the learned initial ones however long the stream (kernels/README.md section 15). Without
    it the scale-invariant pairs grow like ``t^(1/4)`` and the layer adapts ever more slowly
    (benchmarks/long_stream.md). False (the default) is the paper's update, which the official
    and earlier checkpoints were trained with and reproduce exactly; True changes every output
    after a stream's first mini-batch, so run a model with the setting it was trained with. Not
    in the Triton kernels: ``impl="triton"`` raises, ``"auto"`` runs the dual form (on a CPU
    10-45% slower than without the option)."""
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
    attention_window: int = 0
    """``"attention"``: tokens a query sees in each layer, itself included (``t - W < s <= t``;
    ``L`` layers reach ``L (W - 1)`` tokens back); 0: all of them (full causal attention, a
    cache that grows with the stream). With a window the cache keeps the last ``W`` tokens, so
    memory and the cost per token stay constant (a sliding-window baseline; for video, ``k``
    frames are ``k N`` tokens)."""
    lact_window: int = 2048
    """LaCT: tokens of the sliding-window attention in the same layer (0: no attention branch).
    Causal: a token sees the last ``lact_window`` tokens up to itself; non-causal: a chunk sees
    itself whole and the ``lact_window`` tokens before it."""
    lact_num_heads: int | None = None
    """LaCT: fast-weight heads (None: ``num_heads``); fewer, wider heads hold more state."""
    lact_hidden_ratio: float = 1.0
    """LaCT: ``r``, the SwiGLU fast weights' hidden width is ``round(r * D / lact_num_heads)``."""
    lact_momentum: float = 0.0
    """LaCT: momentum coefficient in ``[0, 1)`` on the chunk gradient (0: no momentum)."""
    lact_muon: bool = True
    """LaCT: orthogonalise each fast-weight step by 5 Newton-Schulz iterations (Muon)."""
    lact_lr_init: float = 1e-3
    """LaCT: initial per-token inner learning rate (``softplus`` of the bias at init)."""

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
        for name in ("attention_window", "lact_window"):
            window = getattr(self, name)
            if isinstance(window, bool) or not isinstance(window, int) or window < 0:
                raise ValueError(f"{name}: expected an int >= 0, got {window!r}")
        if self.attention_window and self.mixer != "attention":
            raise ValueError(
                f"attention_window: an option of mixer='attention', not of {self.mixer!r} "
                "(LaCT's window is lact_window)"
            )
        check_positive(self, "ttt_base_lr", allow_none=True)
        if self.bidirectional and self.causal:
            raise ValueError("bidirectional: needs causal=False (a causal model cannot see ahead)")
        self._check_keep_inner_norm()
        self._check_lact()

    def _check_keep_inner_norm(self) -> None:
        """Raise ``ValueError`` unless ``keep_inner_norm`` is a bool the mixer and impl run."""
        if not isinstance(self.keep_inner_norm, bool):
            raise ValueError(f"keep_inner_norm: expected a bool, got {self.keep_inner_norm!r}")
        if not self.keep_inner_norm:
            return
        if self.mixer not in ("ttt_linear", "ttt_mlp"):
            raise ValueError(
                f"keep_inner_norm: a TTT-Linear/TTT-MLP option, not one of mixer={self.mixer!r}"
            )
        if self.impl == "triton":
            raise ValueError(
                "keep_inner_norm: the Triton kernels do not rescale the inner weights; "
                "use impl='auto' or 'dual'"
            )

    def _check_lact(self) -> None:
        check_positive(self, "lact_hidden_ratio", "lact_lr_init")
        check_positive(self, "lact_num_heads", integer=True, allow_none=True)
        if not 0.0 <= self.lact_momentum < 1.0:
            raise ValueError(
                f"lact_momentum: expected 0 <= momentum < 1, got {self.lact_momentum!r}"
            )
        if self.width % self.lact_heads:
            raise ValueError(
                f"lact_num_heads: width {self.width} is not divisible by {self.lact_heads}"
            )
        if self.mixer == "lact" and self.impl == "triton":
            raise ValueError("impl: 'lact' has no Triton form; use 'auto', 'dual' or 'naive'")
        if self.mixer == "lact" and self.bidirectional:
            raise ValueError(
                "bidirectional: not a 'lact' option (causal=False already updates "
                "each chunk with the whole chunk before reading it)"
            )

    @property
    def head_dim(self) -> int:
        """``d = D / H``."""
        return self.width // self.num_heads

    @property
    def lact_heads(self) -> int:
        """Fast-weight heads of a LaCT layer (``lact_num_heads``, or ``num_heads``)."""
        return self.lact_num_heads or self.num_heads

    @property
    def lact_hidden_width(self) -> int:
        """``m``, hidden width of the SwiGLU fast weights: ``round(r * D / lact_heads)``, >= 1."""
        return max(1, round(self.lact_hidden_ratio * self.width / self.lact_heads))

    @property
    def base_lr(self) -> float:
        """The inner learning-rate scale after applying the per-mixer default."""
        if self.ttt_base_lr is not None:
            return self.ttt_base_lr
        return 0.1 if self.mixer == "ttt_mlp" else 1.0
