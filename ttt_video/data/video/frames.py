"""Per-frame pixel operations on uint8 video tensors: resize (crop / pad / stretch), grayscale,
and the one conversion to float that models, losses and reports use (``frames_to_float``).

Letters: F frames, C channels (1 or 3), H height, W width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as nnf

from ttt_video.validation import check_positive

ResizeMode = Literal["crop", "pad", "stretch"]

# ITU-R BT.601 luma weights, the ones FFmpeg's "gray" conversion uses.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class FrameFormat:
    """How decoded frames are shaped before they are returned.

    Attributes:
        size: output ``(H, W)``, or one int for a square, or None to keep the native size.
        resize: ``"crop"`` keeps the aspect ratio and centre-crops the overflow, ``"pad"`` keeps it
            and pads with black, ``"stretch"`` ignores it.
        channels: 3 for RGB, 1 for grayscale.
    """

    size: int | tuple[int, int] | None = None
    resize: ResizeMode = "crop"
    channels: Literal[1, 3] = 3

    def __post_init__(self):
        if self.resize not in ("crop", "pad", "stretch"):
            raise ValueError(f"resize must be crop, pad or stretch, got {self.resize!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.size is not None:
            check_positive({"size": min(self.hw)}, integer=True)

    @property
    def hw(self) -> tuple[int, int] | None:
        """The output ``(H, W)`` or None."""
        if self.size is None:
            return None
        if isinstance(self.size, int):
            return (self.size, self.size)
        return (int(self.size[0]), int(self.size[1]))


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """Frames ``[..., C, H, W]`` as float in [0, 1]: uint8 is divided by 255 (float32), floating
    frames (already in [0, 1]) pass through unchanged.

    Raises:
        TypeError: any other dtype (an integer tensor other than uint8 has no agreed scale).
    """
    if frames.dtype == torch.uint8:
        return frames.float().div_(255)
    if frames.is_floating_point():
        return frames
    raise TypeError(f"frames: expected uint8 or floating point, got {frames.dtype}")


def to_gray(frames: torch.Tensor) -> torch.Tensor:
    """RGB uint8 ``[F, 3, H, W]`` -> luma uint8 ``[F, 1, H, W]`` (BT.601 weights, rounded)."""
    w = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    luma = (frames.float() * w).sum(dim=1, keepdim=True)
    return luma.round_().clamp_(0, 255).to(torch.uint8)


def _interp(frames: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of uint8 ``[F, C, H, W]`` to ``[F, C, *hw]``."""
    if tuple(frames.shape[-2:]) == hw:
        return frames
    out = nnf.interpolate(frames.float(), size=hw, mode="bilinear", antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def scaled_size(h: int, w: int, fmt: FrameFormat) -> tuple[int, int] | None:
    """The ``(H, W)`` a frame of ``h x w`` is scaled to before ``fmt``'s crop or pad (None without
    a target size): covering the target for ``crop``, inside it for ``pad``, the target itself for
    ``stretch``. A frame already at this size scales to itself, so a decoder may do the scaling.
    """
    if fmt.hw is None:
        return None
    th, tw = fmt.hw
    if fmt.resize == "stretch":
        return th, tw
    scale = max(th / h, tw / w) if fmt.resize == "crop" else min(th / h, tw / w)
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    if fmt.resize == "crop":
        sh, sw = max(sh, th), max(sw, tw)
    return sh, sw


def resize_frames(frames: torch.Tensor, size: tuple[int, int], mode: ResizeMode) -> torch.Tensor:
    """Resize uint8 ``[F, C, H, W]`` to ``[F, C, size[0], size[1]]``.

    ``crop`` scales so the frame covers the target and centre-crops; ``pad`` scales so the frame
    fits inside and pads with zeros; ``stretch`` scales each side independently. Frames already at
    ``scaled_size`` are only cropped or padded.
    """
    th, tw = size
    sh, sw = scaled_size(*frames.shape[-2:], FrameFormat(size=size, resize=mode))
    scaled = _interp(frames, (sh, sw))
    if mode == "stretch":
        return scaled
    if mode == "crop":
        top, left = (sh - th) // 2, (sw - tw) // 2
        return scaled[..., top : top + th, left : left + tw].contiguous()
    out = frames.new_zeros((*frames.shape[:-2], th, tw))
    top, left = (th - sh) // 2, (tw - sw) // 2
    out[..., top : top + sh, left : left + sw] = scaled
    return out


def format_frames(rgb: np.ndarray, fmt: FrameFormat) -> torch.Tensor:
    """Decoded RGB uint8 ``[F, H, W, 3]`` (numpy) -> uint8 ``[F, C, H', W']`` per ``fmt``.

    ``rgb`` may come at the native size or already at ``scaled_size`` (a decoder that scaled
    during its RGB conversion): then only the crop or pad is left to do.

    Without resizing or grayscale the result is a zero-copy view in channels-last memory format
    (``x.is_contiguous(memory_format=torch.channels_last)``); use ``reshape``, not ``view``.
    """
    frames = torch.from_numpy(rgb).permute(0, 3, 1, 2)
    if fmt.channels == 1:
        frames = to_gray(frames)
    if fmt.hw is not None:
        frames = resize_frames(frames, fmt.hw, fmt.resize)
    return frames
