"""Decoding backends behind the one reader interface: PyAV (required) and decord (optional).

A backend opens one file, exposes its ``VideoInfo`` and the presentation time of every frame
(``times``, float64 ``[N]`` seconds from the first frame), and decodes any sorted set of frame
indices to RGB uint8 ``[K, H, W, 3]``. Frame ``i`` is the ``i``-th frame in presentation order.

The PyAV backend does not trust the container header: it counts frames by demuxing packets (no
decoding, so cheap, and bounded memory: one int64 per frame), measures the frame rate from the
timestamps, and flags a file as truncated when the header claims more frames or a longer duration
than the packets deliver, or when demuxing or decoding fails part-way.
"""

from __future__ import annotations

import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ttt_video.data.video.errors import VideoReadError

# Re-seek instead of decoding through a gap of more than this many frames.
SEEK_GAP = 120


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as measured (not as the header claims).

    Attributes:
        path: the file.
        num_frames: frames found in the file (packets that carry a frame).
        fps: frame rate (the header's when it agrees with the timestamps within 1%, else measured).
        duration: seconds covered by the frames (last timestamp - first + one frame).
        width, height: frame size in pixels.
        codec: decoder name, e.g. ``"h264"``.
        header_frames: the frame count the container header claims, or None when it has none.
        truncated: the file ends before its header says it should, or decoding failed part-way.
    """

    path: str
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str
    header_frames: int | None = None
    truncated: bool = False


def open_container(path: str | Path) -> av.container.InputContainer:
    """Open ``path`` with PyAV, mapping every failure to a ``VideoReadError`` with its reason."""
    p = Path(path)
    if not p.exists():
        raise VideoReadError(p, "file not found")
    if p.is_dir():
        raise VideoReadError(p, "is a directory, not a video file")
    if p.stat().st_size == 0:
        raise VideoReadError(p, "empty file (0 bytes)")
    try:
        return av.open(str(p))
    except av.error.FFmpegError as err:
        raise VideoReadError(p, f"not a readable video container ({err.strerror})") from err


def video_stream(container: av.container.InputContainer, path: str | Path) -> av.VideoStream:
    """The first video stream of ``container``, checked to have a decoder."""
    if not container.streams.video:
        raise VideoReadError(path, "no video stream in the file")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        raise VideoReadError(path, "unsupported codec: no decoder for the video stream")
    stream.thread_type = "AUTO"
    return stream


class FrameDecoder:
    """Decode a stream from the container's current position; stop quietly at a broken packet.

    After a demux or decode error the decoder is flushed, so the frames it had buffered still come
    out, and ``failed`` becomes True so the caller can report a truncated file. ``count`` is the
    number of frames decoded so far, ``last_pts`` the timestamp of the latest, and ``finished``
    tells that the end of the file was reached.
    """

    def __init__(self, container, stream):
        self.container = container
        self.stream = stream
        self.failed = False
        self.finished = False
        self.count = 0
        self.last_pts: int | None = None

    def __iter__(self) -> Iterator[av.VideoFrame]:
        for frame in self._frames():
            self.count += 1
            self.last_pts = frame.pts
            yield frame
        self.finished = True

    def _frames(self) -> Iterator[av.VideoFrame]:
        codec = self.stream.codec_context
        try:
            for packet in self.container.demux(self.stream):
                yield from codec.decode(packet)
        except av.error.FFmpegError:
            self.failed = True
            try:
                yield from codec.decode(None)
            except av.error.FFmpegError:
                return


def _scan_packets(container, stream) -> tuple[np.ndarray, bool, bool]:
    """Demux every packet: (sorted pts int64 ``[N]``, pts usable for seeking, demux failed)."""
    pts = array.array("q")
    missing, failed = 0, False
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.pts is None:
                missing += 1
            else:
                pts.append(packet.pts)
    except av.error.FFmpegError:
        failed = True
    if missing:
        return np.arange(len(pts) + missing, dtype=np.int64), False, failed
    return np.sort(np.frombuffer(pts, dtype=np.int64)), True, failed


def looks_truncated(container, stream, found: int, seconds: float, fps: float) -> bool:
    """Whether ``found`` frames covering ``seconds`` fall short of what the header claims.

    A claimed duration wins over a claimed frame count: AVI headers count dropped frames, so
    a file can hold fewer frames than its header says and still cover its whole duration.
    """
    claimed = None
    if stream.duration:
        claimed = float(stream.duration * stream.time_base)
    elif container.duration and len(container.streams) == 1:
        claimed = container.duration / 1e6
    if claimed is not None:
        return seconds < claimed - max(2.0 / fps, 0.01 * claimed)
    return found < (stream.frames or 0)


def _measured_fps(times: np.ndarray, header_rate: float | None) -> float:
    """The header rate when it agrees with the timestamps within 1%, else the measured rate."""
    span = float(times[-1] - times[0]) if len(times) > 1 else 0.0
    measured = (len(times) - 1) / span if span > 0 else None
    if measured is None:
        return header_rate or 1.0
    if header_rate and abs(header_rate - measured) <= 0.01 * measured:
        return header_rate
    return measured


class PyAVBackend:
    """PyAV decoding of one file; see the module docstring."""

    name = "av"

    def __init__(self, path: str | Path):
        self.path = str(path)
        container = open_container(path)
        try:
            stream = video_stream(container, path)
            pts, self.seekable, failed = _scan_packets(container, stream)
            self.info, self.times = self._measure(container, stream, pts, failed)
        finally:
            container.close()
        self.pts = pts

    def _measure(self, container, stream, pts, failed) -> tuple[VideoInfo, np.ndarray]:
        """Build ``VideoInfo`` and frame times from the scanned packets."""
        rate = stream.average_rate or stream.guessed_rate
        header_rate = float(rate) if rate else None
        if self.seekable and len(pts):
            times = (pts - pts[0]).astype(np.float64) * float(stream.time_base)
        else:
            times = np.arange(len(pts), dtype=np.float64) / (header_rate or 1.0)
        fps = _measured_fps(times, header_rate)
        duration = float(times[-1]) + 1.0 / fps if len(times) else 0.0
        header_frames = stream.frames or None
        short = looks_truncated(container, stream, len(pts), duration, fps)
        info = VideoInfo(
            path=self.path,
            num_frames=len(pts),
            fps=fps,
            duration=duration,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            header_frames=header_frames,
            truncated=bool(failed or short),
        )
        return info, times

    def _indexed(self, container, stream, first: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """Yield ``(index, frame)`` from frame ``first`` on (earlier frames may come too).

        Seeks to the keyframe before ``first`` when the file allows; when the seek overshoots or
        lands on a frame the decoder flags corrupt, decodes from the start instead.
        """
        if self.seekable and first > 0:
            container.seek(int(self.pts[first]), stream=stream, backward=True)
            for frame in FrameDecoder(container, stream):
                k = int(np.searchsorted(self.pts, frame.pts)) if frame.pts is not None else -1
                if k < 0 or k >= len(self.pts) or self.pts[k] != frame.pts or k > first:
                    break
                if frame.is_corrupt:  # a "keyframe" that needs earlier frames: seeking is unsafe
                    self.seekable = False
                    break
                yield k, frame
                yield from self._following(container, stream, k)
                return
        container.seek(0, stream=stream, backward=True)
        yield from enumerate(FrameDecoder(container, stream))

    def _following(self, container, stream, last: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """Continue a seeked decode, numbering frames by their timestamps."""
        for frame in FrameDecoder(container, stream):
            last = int(np.searchsorted(self.pts, frame.pts)) if frame.pts is not None else last + 1
            yield last, frame

    def get(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode sorted unique indices ``wanted [K]`` -> (indices found ``[K']``, RGB ``[K', H, W, 3]``).

        ``K' < K`` only when the file stops decoding early (truncated).
        """
        position = {int(k): i for i, k in enumerate(wanted)}
        out = np.empty((len(wanted), self.info.height, self.info.width, 3), dtype=np.uint8)
        got = np.zeros(len(wanted), dtype=bool)
        gaps = np.nonzero(np.diff(wanted) > SEEK_GAP)[0] + 1 if self.seekable else []
        runs = np.split(wanted, gaps) if len(wanted) else []
        container = open_container(self.path)
        try:
            stream = video_stream(container, self.path)
            for run in runs:
                remaining = len(run)
                for k, frame in self._indexed(container, stream, int(run[0])):
                    i = position.get(k)
                    if i is not None and not got[i]:
                        out[i] = frame.to_ndarray(format="rgb24")
                        got[i] = True
                        remaining -= 1
                    if k >= run[-1] or not remaining:
                        break
        finally:
            container.close()
        return (wanted, out) if got.all() else (wanted[got], out[got])


class DecordBackend:
    """decord decoding of one file (optional dependency; cannot open GIF or AV1)."""

    name = "decord"

    def __init__(self, path: str | Path, info: VideoInfo | None = None):
        import decord

        self.path = str(path)
        if info is None:
            open_container(path).close()
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0))
        except decord.DECORDError as err:
            raise VideoReadError(path, f"decord cannot open it ({str(err)[-120:]})") from err
        n = len(self._vr)
        self.times = self._vr.get_frame_timestamp(np.arange(n))[:, 0].astype(np.float64)
        self.times -= self.times[0] if n else 0.0
        if info is None:
            first = self._vr[0].shape if n else (0, 0, 3)
            fps = float(self._vr.get_avg_fps()) or 1.0
            info = VideoInfo(self.path, n, fps, n / fps, first[1], first[0], "unknown")
        self.info = info

    def get(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode sorted unique indices ``wanted [K]`` -> (``wanted``, RGB ``[K, H, W, 3]``)."""
        if not len(wanted):
            return wanted, np.zeros((0, self.info.height, self.info.width, 3), dtype=np.uint8)
        return wanted, self._vr.get_batch(wanted.tolist()).asnumpy()


def decord_available() -> bool:
    """True when the optional ``decord`` package imports."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True
