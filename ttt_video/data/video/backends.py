"""Decoding backends behind the one reader interface: PyAV (required), decord and torchcodec
(optional).

Letters: K frames decoded, H height, W width, N frames in the file.

Every backend numbers frames by the file's ``FrameIndex`` (``frame_index.py``: frame ``i`` is the
``i``-th in presentation order) and decodes any sorted set of frame indices to RGB uint8
``[K, H, W, 3]``. Given a ``size``, PyAV and torchcodec scale each frame during its conversion
to RGB (FFmpeg's swscale, bilinear with a support widened for downscaling, which matches torch's
antialiased bilinear resize: see benchmarks/video_io.md), so only the small frames are ever
held; decord returns frames at their native size and the reader resizes them in torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from ttt_video.data.video.errors import VideoReadError
from ttt_video.data.video.frame_index import (
    FrameIndex,
    VideoInfo,
    frame_index,
    open_container,
    video_stream,
)

__all__ = [
    "DecordBackend",
    "FrameDecoder",
    "PyAVBackend",
    "TorchCodecBackend",
    "VideoInfo",
    "decord_available",
    "open_container",
    "torchcodec_available",
    "video_stream",
]

# Seek to the keyframe before a wanted frame when that skips more than this many frames: a seek
# costs about one frame's decode plus refilling the decoder's thread pipeline.
SEEK_SKIP = 8
# swscale's filter for scaling during the RGB conversion (the closest to torch's antialiased
# bilinear resize of the ones measured in benchmarks/video_io.py).
SCALE_INTERPOLATION = "BILINEAR"


class FrameDecoder:
    """Decode a stream from the container's current position; stop quietly at a broken packet.

    After a demux or decode error the decoder is flushed, so the frames it had buffered still come
    out, and ``failed`` becomes True so the caller can report a truncated file.
    """

    def __init__(self, container, stream):
        self.container = container
        self.stream = stream
        self.failed = False

    def __iter__(self) -> Iterator[av.VideoFrame]:
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


def prime(container, stream) -> None:
    """Decode the first frame before a first seek. Some files carry codec parameters only in
    their first packets: frames decoded after a seek past them come out corrupt (cockatoo.mp4
    from its second keyframe on, in PyAV, decord and torchcodec alike)."""
    next(iter(FrameDecoder(container, stream)), None)


def frame_rgb(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
    """A decoded frame as RGB uint8 ``[H, W, 3]``, scaled to ``size = (H, W)`` during the
    conversion when given."""
    if size is None or (frame.height, frame.width) == tuple(size):
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(
        width=size[1], height=size[0], format="rgb24", interpolation=SCALE_INTERPOLATION
    ).to_ndarray()


class PyAVBackend:
    """PyAV decoding of one file: seeks to the keyframe before a wanted frame when that skips
    more than ``SEEK_SKIP`` frames, else decodes through; frames are numbered by their timestamps
    in the ``FrameIndex``."""

    name = "av"

    def __init__(self, path: str | Path, index: FrameIndex | None = None):
        self.path = str(path)
        self.index = index or frame_index(path)
        # False once a seek lands on a frame that needs earlier ones: decode from the start then.
        self.seekable = self.index.seekable

    @property
    def info(self) -> VideoInfo:
        return self.index.info

    def frames(
        self, wanted: np.ndarray, size: tuple[int, int] | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Decode sorted unique frame indices ``wanted [K]`` in order -> ``(index, RGB [H, W, 3])``.

        Frames come at ``size = (H, W)`` when given, else at the native size. Fewer than ``K``
        come when the file stops decoding early (truncated) or a frame does not decode.
        """
        if not len(wanted):
            return
        container = open_container(self.path)
        try:
            stream = video_stream(container, self.path)
            if self.seekable and self.index.keyframe_before(int(wanted[0])) > 0:
                prime(container, stream)
            for k, frame in self._decoded(container, stream, wanted):
                yield k, frame_rgb(frame, size)
        finally:
            container.close()

    def get(
        self, wanted: np.ndarray, size: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode sorted unique ``wanted [K]`` -> (indices found ``[K']``, RGB ``[K', H, W, 3]``)."""
        h, w = size or (self.info.height, self.info.width)
        out = np.empty((len(wanted), h, w, 3), dtype=np.uint8)
        found = np.empty(len(wanted), dtype=np.int64)
        count = 0
        for count, (k, frame) in enumerate(self.frames(wanted, size), 1):
            found[count - 1], out[count - 1] = k, frame
        return (found, out) if count == len(wanted) else (found[:count], out[:count])

    def _decoded(
        self, container, stream, wanted: np.ndarray
    ) -> Iterator[tuple[int, av.VideoFrame]]:
        """``(index, frame)`` for each frame of ``wanted`` that decodes, in order."""
        position, i = -1, 0
        key = self.index.keyframe_before(int(wanted[0]))
        frames = self._decode_from(container, stream, key)
        while True:
            for k, frame in frames:
                position = k
                i = max(i, int(np.searchsorted(wanted, k)))  # wanted frames before k never came
                if i < len(wanted) and wanted[i] == k:
                    yield k, frame
                    i += 1
                if i == len(wanted):
                    return
                # Seek when the keyframe before the next wanted frame is far ahead (and is not
                # the one just sought: a seek may land on an earlier keyframe).
                next_key = self.index.keyframe_before(int(wanted[i]))
                if self.seekable and next_key > max(key, position + SEEK_SKIP):
                    break
            else:
                return
            key = next_key
            frames = self._decode_from(container, stream, key)

    def _decode_from(self, container, stream, key: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """``(index, frame)`` from keyframe ``key`` on (earlier frames may come too).

        Seeks to the keyframe's timestamp when the file allows; when the seek overshoots or lands
        on a frame the decoder flags corrupt, decodes from the start instead.
        """
        if self.seekable and key > 0:
            container.seek(int(self.index.pts[key]), stream=stream, backward=True)
            frames = self._numbered(FrameDecoder(container, stream))
            first = next(frames, None)
            if first is None:
                return
            k, frame = first
            if k <= key and not frame.is_corrupt:
                yield first
                yield from frames
                return
            if frame.is_corrupt:  # a "keyframe" that needs earlier frames: seeking is unsafe
                self.seekable = False
        container.seek(0, stream=stream, backward=True)
        yield from self._numbered(FrameDecoder(container, stream))

    def _numbered(self, decoder: FrameDecoder) -> Iterator[tuple[int, av.VideoFrame]]:
        """Number decoded frames by their timestamps in the index (one more than the previous
        frame's number when a timestamp is missing or unknown, or the file has none)."""
        k = -1
        for frame in decoder:
            found = self.index.frame_at(frame.pts)
            k = found if found is not None else k + 1
            yield k, frame


class DecordBackend:
    """decord decoding of one file (optional dependency; cannot open GIF or AV1). Frames come at
    their native size."""

    name = "decord"

    def __init__(self, path: str | Path, index: FrameIndex | None = None):
        import decord

        self.path = str(path)
        self.index = index or frame_index(path)
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0))
        except decord.DECORDError as err:
            raise VideoReadError(path, f"decord cannot open it ({str(err)[-120:]})") from err
        if len(self._vr) != self.index.info.num_frames:
            reason = f"decord counts {len(self._vr)} frames, the index {self.index.info.num_frames}"
            raise VideoReadError(path, reason)
        self._vr[0]  # as ``prime``: a first read that seeks returns corrupt frames otherwise

    @property
    def info(self) -> VideoInfo:
        return self.index.info

    def get(
        self, wanted: np.ndarray, size: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode sorted unique ``wanted [K]`` -> (``wanted``, RGB ``[K, H, W, 3]`` native size)."""
        if not len(wanted):
            return wanted, np.zeros((0, self.info.height, self.info.width, 3), dtype=np.uint8)
        return wanted, self._vr.get_batch(wanted.tolist()).asnumpy()


class TorchCodecBackend:
    """torchcodec decoding of one file (optional dependency; needs FFmpeg's shared libraries).

    The decoder is given the ``FrameIndex`` as its frame mappings, so it neither scans the file
    again nor numbers frames differently; frames are scaled in the decoder when a size is given
    (one decoder per size, opened at its first read: a file torchcodec cannot open fails there).
    """

    name = "torchcodec"

    def __init__(self, path: str | Path, index: FrameIndex | None = None):
        self.path = str(path)
        self.index = index or frame_index(path)
        if not self.index.seekable:
            raise VideoReadError(path, "torchcodec needs frame timestamps, the file has none")
        pts = self.index.pts
        durations = np.diff(pts, append=pts[-1] + (pts[-1] - pts[-2] if len(pts) > 1 else 1))
        self._mappings = json.dumps(
            {
                "frames": [
                    {"pts": int(p), "duration": int(d), "key_frame": int(k)}
                    for p, d, k in zip(pts, durations, self.index.keyframes)
                ]
            }
        )
        self._decoders: dict[tuple[int, int] | None, object] = {}

    @property
    def info(self) -> VideoInfo:
        return self.index.info

    def _decoder(self, size: tuple[int, int] | None):
        """The torchcodec decoder producing frames at ``size`` (one per size, opened once)."""
        if size not in self._decoders:
            from torchcodec.decoders import VideoDecoder
            from torchcodec.transforms import Resize

            try:
                self._decoders[size] = VideoDecoder(
                    self.path,
                    dimension_order="NHWC",
                    num_ffmpeg_threads=0,
                    custom_frame_mappings=self._mappings,
                    transforms=[Resize(size)] if size is not None else None,
                )
                self._decoders[size].get_frame_at(0)  # as ``prime``
            except (RuntimeError, ValueError) as err:
                raise VideoReadError(self.path, f"torchcodec cannot open it ({err})") from err
        return self._decoders[size]

    def get(
        self, wanted: np.ndarray, size: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode sorted unique ``wanted [K]`` -> (``wanted``, RGB ``[K, H, W, 3]`` at ``size``)."""
        if not len(wanted):
            h, w = size or (self.info.height, self.info.width)
            return wanted, np.zeros((0, h, w, 3), dtype=np.uint8)
        return wanted, self._decoder(size).get_frames_at(wanted.tolist()).data.numpy()


def decord_available() -> bool:
    """True when the optional ``decord`` package imports."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def torchcodec_available() -> bool:
    """True when the optional ``torchcodec`` package imports and finds FFmpeg's libraries."""
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        return False
    return True
