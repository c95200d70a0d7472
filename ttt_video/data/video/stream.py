"""Streaming arbitrarily long video in bounded memory (PyAV, sequential decode).

Letters: K frames per chunk, C channels, H height, W width, G entries in the sample grid.

The stream selects frames exactly as ``VideoReader.read`` does with the same ``ClipSpec``
(``random`` excepted): the sample grid of the file's ``FrameIndex`` (``frame_index.py``, built
once per file from the demuxed packets, 17 bytes per frame). It then decodes front to back,
seeking over long gaps, scales each frame during its RGB conversion when ``fmt`` has a size, and
holds at most one chunk plus one frame (and the sample grid, 8 bytes per sampled frame), so a
ten-hour file streams in the memory of one chunk.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch

from ttt_video.data.video.backends import PyAVBackend
from ttt_video.data.video.clips import ClipSpec, sample_grid
from ttt_video.data.video.errors import (
    VideoReadError,
    VideoTruncatedError,
    VideoTruncatedWarning,
)
from ttt_video.data.video.frames import FrameFormat, format_frames, scaled_size


def stream_video(
    path: str | Path,
    chunk_size: int | None = None,
    spec: ClipSpec | None = None,
    fmt: FrameFormat | None = None,
    *,
    allow_truncated: bool = False,
) -> Iterator[torch.Tensor]:
    """Stream ``path`` front to back: uint8 frames ``[C, H, W]``, or chunks ``[K, C, H, W]``.

    Chunks hold ``chunk_size`` frames; the last one may be shorter. ``spec`` selects frames as in
    ``VideoReader.read`` (no ``random``; ``num_frames`` caps the count). A truncated file raises
    ``VideoTruncatedError`` after the frames that decode, or warns when ``allow_truncated``.
    """
    spec = spec or ClipSpec()
    fmt = fmt or FrameFormat()
    if spec.random:
        raise ValueError("stream_video reads sequentially; random clips need VideoReader.read")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    backend = PyAVBackend(path)
    info = backend.info
    grid = sample_grid(backend.index.times, info.fps, spec)[: spec.num_frames]
    size = scaled_size(info.height, info.width, fmt)
    try:
        frames = _grid_frames(backend.frames(np.unique(grid), size), grid)
        decoded = yield from _chunks(frames, chunk_size, fmt)
    except av.error.FFmpegError as err:
        raise VideoReadError(path, f"decoding failed ({err.strerror})") from err
    if info.truncated or decoded < len(grid):
        reason = f"truncated: {decoded} of the {len(grid)} frames wanted decode"
        if info.header_frames:
            reason += f", the header claims {info.header_frames} frames"
        if not allow_truncated:
            raise VideoTruncatedError(path, reason, decoded=decoded)
        warnings.warn(f"{path}: {reason}", VideoTruncatedWarning, stacklevel=2)


def _grid_frames(decoded: Iterator[tuple[int, np.ndarray]], grid: np.ndarray):
    """Expand ``(index, RGB)`` pairs of the grid's unique indices into the grid ``[G]`` (sorted,
    with repeats) -> RGB frames in grid order; stops at the first frame that did not decode."""
    position = 0
    for k, rgb in decoded:
        if grid[position] != k:  # a wanted frame did not decode: the stream ends there
            return
        while position < len(grid) and grid[position] == k:
            yield rgb
            position += 1


def _chunks(frames: Iterator[np.ndarray], chunk_size: int | None, fmt: FrameFormat):
    """Pack RGB frames into formatted uint8 chunks ``[K, C, H, W]`` (or single frames); returns
    the number of frames packed."""
    buffer: np.ndarray | None = None
    filled = count = 0
    for rgb in frames:
        count += 1
        if chunk_size is None:
            yield format_frames(rgb[None], fmt)[0]
            continue
        if buffer is None:
            buffer = np.empty((chunk_size, *rgb.shape), dtype=np.uint8)
        buffer[filled] = rgb
        filled += 1
        if filled == chunk_size:
            yield format_frames(buffer, fmt)
            buffer, filled = None, 0
    if buffer is not None and filled:
        yield format_frames(buffer[:filled], fmt)
    return count
