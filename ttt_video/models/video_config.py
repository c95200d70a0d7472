"""Typed configuration of the video models (frame encoder, backbone, heads).

Letters: ``C`` channels, ``S`` frame side, ``p`` patch side, ``N`` tokens per frame, ``D`` width,
``K`` classes, ``b`` TTT mini-batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

from ttt_video.layers.config import check_positive_int
from ttt_video.models.config import BackboneConfig

ENCODERS = ("patch", "timm")
DECODERS = ("linear", "conv", "none")


@dataclass
class VideoConfig(BackboneConfig):
    """A video model: encoder -> frame-major tokens -> backbone -> prediction / class heads.

    The backbone fields (``width``, ``mixer``, ``num_layers``, the video variants ``causal``,
    ``qk_l2_norm``, ...) are those of ``BackboneConfig``.
    """

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
    """TTT mini-batch = this many frames of tokens (``b = k N``); 0 keeps ``mini_batch_size``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("image_size", "patch_size", "decoder_hidden"):
            check_positive_int(name, getattr(self, name))
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

    @property
    def grid(self) -> int:
        """Tokens per side of the patch grid (``S / p``)."""
        return self.image_size // self.patch_size
