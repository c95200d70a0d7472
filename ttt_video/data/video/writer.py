"""Writing video (mp4 via libx264 or mpeg4, avi, gif) and laying videos side by side or in a grid.

Letters: F frames, C channels (1 or 3), H height, W width.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from ttt_video.data.video.errors import VideoWriteError

# (container format, default codec, pixel format) per file suffix.
_BY_SUFFIX = {
    ".mp4": ("mp4", "libx264", "yuv420p"),
    ".avi": ("avi", "mpeg4", "yuv420p"),
    ".mkv": ("matroska", "libx264", "yuv420p"),
    ".gif": ("gif", "gif", "rgb8"),
}
_SUBSAMPLED = ("yuv420p",)


def _to_uint8_hwc(frames: torch.Tensor | np.ndarray, path: Path) -> np.ndarray:
    """uint8 or float-in-[0, 1] ``[F, C, H, W]`` -> uint8 RGB numpy ``[F, H, W, 3]``."""
    x = torch.as_tensor(frames).detach().cpu()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise VideoWriteError(
            path, f"frames must be [F, C, H, W] with C in (1, 3), got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise VideoWriteError(path, "no frames to write")
    if x.is_floating_point():
        x = (x.clamp(0, 1) * 255).round()
    x = x.to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def write_video(
    path: str | Path,
    frames: torch.Tensor | np.ndarray,
    fps: float,
    *,
    codec: str | None = None,
    crf: int | None = None,
    pad_to_even: bool = False,
) -> Path:
    """Write ``frames`` (uint8, or float in [0, 1], ``[F, C, H, W]``) to ``path``; returns the path.

    The container follows the suffix (.mp4, .avi, .mkv, .gif); ``codec`` overrides the default
    (libx264 for mp4/mkv, mpeg4 for avi). 4:2:0 codecs need even sizes: odd ones raise
    ``VideoWriteError`` unless ``pad_to_even`` (one black row/column added). ``crf`` sets
    libx264 quality (0 lossless luma, 23 default).
    """
    path = Path(path)
    if path.suffix.lower() not in _BY_SUFFIX:
        raise VideoWriteError(
            path, f"unknown suffix {path.suffix!r}; use one of {sorted(_BY_SUFFIX)}"
        )
    if fps <= 0:
        raise VideoWriteError(path, f"fps must be positive, got {fps}")
    fmt, default_codec, pix = _BY_SUFFIX[path.suffix.lower()]
    codec = codec or default_codec
    rgb = _to_uint8_hwc(frames, path)
    h, w = rgb.shape[1:3]
    if pix in _SUBSAMPLED and (h % 2 or w % 2):
        if not pad_to_even:
            reason = f"odd size {w}x{h}: {codec} with {pix} needs even width and height"
            raise VideoWriteError(path, reason + " (pass pad_to_even=True)")
        rgb = np.pad(rgb, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _encode(path, rgb, fps, fmt, codec, pix, crf)
    except av.error.FFmpegError as err:
        raise VideoWriteError(path, f"encoding with {codec} failed ({err.strerror})") from err
    return path


def _encode(path: Path, rgb: np.ndarray, fps: float, fmt: str, codec: str, pix: str, crf):
    """Encode RGB ``[F, H, W, 3]`` with PyAV."""
    options = {"crf": str(crf)} if crf is not None and codec == "libx264" else {}
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = rgb.shape[2], rgb.shape[1]
        stream.pix_fmt = pix
        stream.options = options
        for image in rgb:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def side_by_side(*videos: torch.Tensor, gap: int = 2) -> torch.Tensor:
    """Join videos ``[F, C, H_i, W_i]`` left to right -> ``[F, C, max H, sum W + gaps]``.

    Shorter videos hold their last frame; grayscale is broadcast to RGB when channels differ;
    videos are top-aligned on a black background.
    """
    return video_grid(list(videos), cols=len(videos), gap=gap)


def video_grid(videos: list[torch.Tensor], cols: int | None = None, gap: int = 2) -> torch.Tensor:
    """Tile videos ``[F_i, C_i, H_i, W_i]`` row-major in ``cols`` columns -> ``[F, C, H', W']``.

    ``F`` is the longest video (shorter ones hold their last frame), cells are the largest
    ``H_i x W_i``, channels the largest ``C_i`` (grayscale broadcast to RGB).
    """
    if not videos:
        raise ValueError("video_grid needs at least one video")
    if any(v.ndim != 4 for v in videos):
        raise ValueError(f"videos must be [F, C, H, W], got {[tuple(v.shape) for v in videos]}")
    cols = cols or math.ceil(math.sqrt(len(videos)))
    rows = math.ceil(len(videos) / cols)
    f = max(v.shape[0] for v in videos)
    c = max(v.shape[1] for v in videos)
    h = max(v.shape[2] for v in videos)
    w = max(v.shape[3] for v in videos)
    out = videos[0].new_zeros((f, c, rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap))
    for i, v in enumerate(videos):
        held = torch.cat([v, v[-1:].expand(f - v.shape[0], -1, -1, -1)]) if v.shape[0] < f else v
        top, left = (i // cols) * (h + gap), (i % cols) * (w + gap)
        out[:, :, top : top + v.shape[2], left : left + v.shape[3]] = held.expand(-1, c, -1, -1)
    return out
