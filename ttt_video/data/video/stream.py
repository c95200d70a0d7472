"""Streaming arbitrarily long video in bounded memory (PyAV, sequential decode).

Letters: K frames per chunk, C channels, H height, W width.

The stream never indexes the whole file: it decodes front to back (seeking first when the clip
starts at a time in seconds) and holds at most one chunk plus one look-ahead frame, so a
ten-hour file streams in the memory of one chunk. It samples the same frames as
``VideoReader.read`` with the same ``ClipSpec`` (``random`` excepted).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch

from ttt_video.data.video.backends import (
    FrameDecoder,
    looks_truncated,
    open_container,
    video_stream,
)
from ttt_video.data.video.clips import TIME_EPS, ClipSpec
from ttt_video.data.video.errors import (
    VideoReadError,
    VideoTruncatedError,
    VideoTruncatedWarning,
)
from ttt_video.data.video.frames import FrameFormat, format_frames


def _timed_frames(container, stream, spec: ClipSpec, decoder: FrameDecoder):
    """Yield ``(time, frame)`` inside the spec's range; time in seconds from the first frame.

    When the range ends at ``end_frame``, a last ``(time, None)`` gives that frame's time.
    """
    base = stream.start_time or 0
    tb = float(stream.time_base)
    rate = float(stream.average_rate or stream.guessed_rate or 1.0)
    if spec.start:
        container.seek(base + int(spec.start / tb), stream=stream, backward=True)
    for index, frame in enumerate(decoder):
        t = (frame.pts - base) * tb if frame.pts is not None else index / rate
        if spec.start_frame is not None and index < spec.start_frame:
            continue
        if spec.start is not None and t < spec.start - TIME_EPS:
            continue
        if spec.end_frame is not None and index >= spec.end_frame:
            yield t, None
            return
        if spec.end is not None and t >= spec.end - TIME_EPS:
            return
        yield t, frame


def _resampled(timed, fps: float, native: float, end: float | None):
    """Re-time ``(time, frame)`` pairs to ``fps``: each target time gets the frame on screen then.

    Holds one frame of look-ahead, since a frame's screen time ends where the next one begins; the
    last frame lasts until ``end``, a closing ``(time, None)``, or as long as the one before it.
    """
    held, t0, prev, last, k = None, 0.0, None, 0.0, 0
    for t, frame in timed:
        if held is not None:
            while t0 + k / fps + TIME_EPS < t:
                yield held
                k += 1
        if frame is None:
            end = t
            break
        if held is None:
            t0 = t
        held, prev, last = frame, last if held is not None else None, t
    if held is None:
        return
    if end is None:
        end = last + (last - prev if prev is not None else 1.0 / native)
    for _ in range(k, math.ceil((end - t0 - TIME_EPS) * fps)):
        yield held


def _sampled_frames(container, stream, spec: ClipSpec, decoder) -> Iterator[av.VideoFrame]:
    """The spec's frames in order: range, optional resampling, stride, length limit."""
    timed = _timed_frames(container, stream, spec, decoder)
    if spec.fps is None:
        frames = (frame for _, frame in timed if frame is not None)
    else:
        native = float(stream.average_rate or stream.guessed_rate or spec.fps)
        frames = _resampled(timed, spec.fps, native, spec.end)
    limit = spec.num_frames * spec.stride if spec.num_frames else None
    for i, frame in enumerate(frames):
        if limit is not None and i >= limit:
            return
        if i % spec.stride == 0:
            yield frame


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
    ``VideoReader.read`` (no ``random``). A file that stops decoding part-way raises
    ``VideoTruncatedError`` at the end of the stream, or warns when ``allow_truncated``.
    """
    spec = spec or ClipSpec()
    fmt = fmt or FrameFormat()
    if spec.random:
        raise ValueError("stream_video reads sequentially; random clips need VideoReader.read")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    container = open_container(path)
    try:
        stream = video_stream(container, path)
        decoder = FrameDecoder(container, stream)
        yield from _chunks(_sampled_frames(container, stream, spec, decoder), chunk_size, fmt)
        if decoder.failed or (decoder.finished and not spec.start and _short(stream, decoder)):
            reason = f"truncated: decoding stopped after {decoder.count} frames"
            if stream.frames:
                reason += f", the header claims {stream.frames}"
            if not allow_truncated:
                raise VideoTruncatedError(path, reason, decoded=decoder.count)
            warnings.warn(f"{path}: {reason}", VideoTruncatedWarning, stacklevel=2)
    except av.error.FFmpegError as err:
        raise VideoReadError(path, f"decoding failed ({err.strerror})") from err
    finally:
        container.close()


def _short(stream, decoder: FrameDecoder) -> bool:
    """Whether a stream decoded from its first frame to the end fell short of its header."""
    rate = float(stream.average_rate or stream.guessed_rate or 1.0)
    seconds = decoder.count / rate
    if decoder.last_pts is not None:
        seconds = (decoder.last_pts - (stream.start_time or 0)) * float(stream.time_base) + 1 / rate
    return looks_truncated(stream.container, stream, decoder.count, seconds, rate)


def _chunks(frames: Iterator[av.VideoFrame], chunk_size: int | None, fmt: FrameFormat):
    """Pack decoded frames into formatted uint8 chunks ``[K, C, H, W]`` (or single frames)."""
    buffer: np.ndarray | None = None
    filled = 0
    for frame in frames:
        rgb = frame.to_ndarray(format="rgb24")
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
