"""Typed configuration of the video models (frame encoder, backbone, heads).

Letters: ``C`` channels, ``S`` frame side, ``p`` patch side, ``N`` tokens per frame, ``D`` width,
``K`` classes, ``k`` frames per TTT mini-batch, ``b`` TTT mini-batch size in tokens.

The TTT mini-batch of a video model is counted in frames: ``b = k N`` is derived, not given.
``mini_batch_size`` stays unset (None) unless ``frames_per_mini_batch = 0``, where it gives
``b`` in tokens; set together with ``k > 0`` it must equal ``k N``, so a config never says one
mini-batch while the model runs another.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ttt_video.models.config import BackboneConfig
from ttt_video.validation import check_positive

ENCODERS = ("patch", "timm")
DECODERS = ("linear", "conv", "none")


@dataclass
class VideoConfig(BackboneConfig):
    """A video model: encoder -> frame-major tokens -> backbone -> prediction / class heads.

    The backbone fields (``width``, ``mixer``, ``num_layers``, ``gradient_checkpointing``, the
    video variants ``causal``, ``qk_l2_norm``, ...) are those of ``BackboneConfig``, except
    ``mini_batch_size`` (module docstring): ``backbone_config(N)`` gives the backbone's own
    config with ``b`` resolved.
    """

    POSITIVE_INTS = tuple(n for n in BackboneConfig.POSITIVE_INTS if n != "mini_batch_size")
    """``mini_batch_size`` may be None here; ``__post_init__`` checks it."""

    mini_batch_size: int | None = None
    """TTT mini-batch in tokens: None (derived, ``frames_per_mini_batch * N``) unless
    ``frames_per_mini_batch = 0``; a value that disagrees with the derived one is an error."""

    image_size: int = 64
    """``S``: frames are ``S x S`` (resize other videos before they reach the model)."""
    channels: int = 1
    """``C``: 1 (grayscale) or 3 (RGB)."""
    encoder: str = "patch"
    """``"patch"`` (learned ``p x p`` patch embedding) or ``"timm"`` (a timm backbone)."""
    patch_size: int = 16
    """``p`` of the patch encoder (``N = (S / p)^2`` tokens per frame)."""
    timm_name: str = "resnet18"
    """timm model name of the ``"timm"`` encoder (built with ``pretrained=False``)."""
    timm_weights: str | None = None
    """Local weights file of the timm encoder (None: random initialisation)."""
    timm_frozen: bool = True
    """Freeze the timm encoder's parameters."""
    timm_pool: bool = True
    """Pool each frame's timm feature map into one token (``N = 1``)."""
    motion_input: bool = False
    """Encode each frame together with its difference to the previous frame (``2C`` channels)."""
    frame_mixer: bool = True
    """A token-mixing MLP over the ``N`` tokens of each frame before the heads (frame-causal)."""
    decoder: str = "linear"
    """Pixel decoder of the prediction head: ``"linear"``, ``"conv"`` or ``"none"`` (no head)."""
    decoder_hidden: int = 32
    """Channels of the conv decoder."""
    residual: bool = True
    """Predict frame ``t+1`` as frame ``t`` plus the decoded change (else the decoded frame)."""
    num_classes: int = 0
    """``K`` of the per-frame classification readout (0: no classification head)."""
    frames_per_mini_batch: int = 1
    """``k``: the TTT mini-batch is this many frames of tokens (``b = k N``); 0: the mini-batch
    is ``mini_batch_size`` tokens (required then)."""
    temporal_conv: bool = False
    """The causal convolutions (``pre_conv``, and the Q/K convs of ``share_qk``) step over
    frames instead of tokens: tap ``j`` reads the same patch ``w-1-j`` frames back
    (``conv_dilation = N``). Leave ``conv_dilation`` at 1 with it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "image_size", "patch_size", "decoder_hidden", integer=True)
        if self.channels not in (1, 3):
            raise ValueError(f"channels: expected 1 or 3, got {self.channels!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder: unknown {self.encoder!r}; valid: {', '.join(ENCODERS)}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder: unknown {self.decoder!r}; valid: {', '.join(DECODERS)}")
        if self.encoder == "patch" and self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size: {self.patch_size} does not divide image_size={self.image_size}"
            )
        if self.decoder != "none" and self.encoder != "patch":
            raise ValueError("decoder: frame prediction needs encoder='patch' (a token grid)")
        if self.num_classes < 0 or self.frames_per_mini_batch < 0:
            raise ValueError(
                f"num_classes/frames_per_mini_batch: expected >= 0, got "
                f"{self.num_classes}/{self.frames_per_mini_batch}"
            )
        if self.decoder == "none" and self.num_classes == 0:
            raise ValueError("decoder/num_classes: the model needs a prediction or class head")
        if self.bidirectional:
            raise ValueError("bidirectional: video models stream causally; use causal layers")
        check_positive(self, "mini_batch_size", integer=True, allow_none=True)
        if self.mini_batch_size is None and self.frames_per_mini_batch == 0:
            raise ValueError(
                "mini_batch_size: required (in tokens) when frames_per_mini_batch is 0"
            )
        if self.temporal_conv and not (self.pre_conv or self.share_qk):
            raise ValueError(
                "temporal_conv: the model has no convolution to run over frames; set pre_conv "
                "(or share_qk, the Q/K convs of a TTT layer)"
            )
        if self.temporal_conv and self.conv_dilation != 1:
            raise ValueError(
                f"conv_dilation: {self.conv_dilation} conflicts with temporal_conv (which sets "
                "it to the tokens per frame); leave it at 1"
            )
        if self.tokens_per_frame is not None:
            self.backbone_mini_batch_size(self.tokens_per_frame)

    @property
    def grid(self) -> int:
        """Tokens per side of the patch grid (``S / p``)."""
        return self.image_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int | None:
        """``N`` when the config fixes it (patch encoder ``(S / p)^2``, pooled timm encoder 1);
        None for an unpooled timm encoder, whose ``N`` is known once it is built."""
        if self.encoder == "patch":
            return self.grid**2
        return 1 if self.timm_pool else None

    def backbone_mini_batch_size(self, tokens_per_frame: int) -> int:
        """``b`` in tokens for ``N = tokens_per_frame``: ``frames_per_mini_batch * N``, or
        ``mini_batch_size`` when ``frames_per_mini_batch`` is 0.

        Raises ``ValueError`` naming both fields when ``mini_batch_size`` is set to another value.
        """
        k = self.frames_per_mini_batch
        if k == 0:
            return self.mini_batch_size
        b = k * tokens_per_frame
        if self.mini_batch_size not in (None, b):
            raise ValueError(
                f"mini_batch_size: {self.mini_batch_size} conflicts with frames_per_mini_batch={k} "
                f"(x {tokens_per_frame} tokens per frame = {b} tokens); leave mini_batch_size "
                "unset (null) for the derived value, or set frames_per_mini_batch to 0 to give "
                "the mini-batch in tokens"
            )
        return b

    def backbone_config(self, tokens_per_frame: int) -> BackboneConfig:
        """The backbone's config: the ``BackboneConfig`` fields of this one, with
        ``mini_batch_size`` resolved by ``backbone_mini_batch_size(tokens_per_frame)`` and
        ``conv_dilation`` by ``temporal_conv``."""
        values = {f.name: getattr(self, f.name) for f in fields(BackboneConfig)}
        values["mini_batch_size"] = self.backbone_mini_batch_size(tokens_per_frame)
        if self.temporal_conv:
            values["conv_dilation"] = tokens_per_frame
        return BackboneConfig(**values)
