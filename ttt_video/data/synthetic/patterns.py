"""Synthetic video files of any length: moving patterns encoded chunk by chunk, in the memory of
one chunk (for memory and speed checks of the paths that read long files).

Letters: K frames per chunk, H height, W width.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ttt_video.data.video.writer import VideoWriter


def pattern_frames(start: int, count: int, height: int, width: int) -> torch.Tensor:
    """Frames ``start .. start + count - 1`` of the pattern video: uint8 ``[K, 3, H, W]``.

    A diagonal colour grating drifting by 2 pixels per frame and a bright square bouncing
    between the walls at 3 pixels per frame (a pure function of the frame index).
    """
    shifts = np.array([0.0, 2.1, 4.2])
    colours = (np.sin(2 * np.pi * np.arange(32)[:, None] / 32 + shifts) + 1) * 60  # [32, 3]
    y, x = np.mgrid[0:height, 0:width]
    t = np.arange(start, start + count)[:, None, None]
    phase = (x + y - 2 * t) % 32  # [K, H, W]
    frames = np.ascontiguousarray(colours.astype(np.uint8)[phase].transpose(0, 3, 1, 2))
    side = max(2, min(height, width) // 5)
    for k, f in enumerate(range(start, start + count)):
        top = _bounce(2 * f, height - side)
        left = _bounce(3 * f, width - side)
        frames[k, :, top : top + side, left : left + side] = 250
    return torch.from_numpy(frames)


def _bounce(distance: int, span: int) -> int:
    """Position after moving ``distance`` pixels back and forth in ``[0, span]``."""
    if span <= 0:
        return 0
    k = distance % (2 * span)
    return k if k <= span else 2 * span - k


def write_pattern_video(
    path: str | Path,
    seconds: float,
    fps: float = 10.0,
    height: int = 240,
    width: int = 320,
    chunk: int = 100,
) -> Path:
    """Write ``seconds`` of :func:`pattern_frames` at ``fps`` to ``path`` (.mp4, .avi or .mkv),
    ``chunk`` frames at a time; returns the path."""
    total = round(seconds * fps)
    with VideoWriter(path, fps) as writer:
        for start in range(0, total, chunk):
            writer.write(pattern_frames(start, min(chunk, total - start), height, width))
    return Path(path)
