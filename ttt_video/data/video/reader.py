"""Reading video for dense sampling: one reader interface over PyAV (default), decord and torchcodec
(optional).

Letters: F frames returned, C channels (1 or 3), H height, W width, N frames in the file.

Frames are numbered ``0..N-1`` in presentation order by the file's ``FrameIndex``, the one rule of
every backend and of ``stream_video`` (``frame_index.py``: built once per file, cached in the
process and, after ``ttt-video prepare index``, on disk). A ``ClipSpec`` turns a file into a *sample
grid* of frame indices: the frames inside ``[start, end)`` (seconds or frames), resampled to a
target ``fps`` when one is given (for each target time, the frame on screen at that time, so
variable-frame-rate files are sampled by their timestamps), then every ``stride``-th. A clip is
``num_frames`` consecutive grid entries, the first ones or at a random offset.

    reader = VideoReader("walk.mp4")                      # measures frames, fps, truncation
    clip = reader.read(ClipSpec(fps=10, num_frames=16, random=True), FrameFormat(size=64))
    clip.frames                                           # uint8 [16, 3, 64, 64]
    for chunk in stream_video("ten_hours.mkv", chunk_size=64):
        ...                                               # uint8 [64, 3, H, W], bounded memory
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ttt_video.data.video.backends import (
    DecordBackend,
    PyAVBackend,
    TorchCodecBackend,
    decord_available,
    torchcodec_available,
)
from ttt_video.data.video.clips import ClipSpec, sample_grid
from ttt_video.data.video.errors import (
    VideoReadError,
    VideoTruncatedError,
    VideoTruncatedWarning,
)
from ttt_video.data.video.frame_index import FrameIndex, VideoInfo, frame_index
from ttt_video.data.video.frames import FrameFormat, format_frames, scaled_size
from ttt_video.data.video.stream import stream_video
from ttt_video.data.video.writer import side_by_side, video_grid, write_video

Backend = Literal["auto", "av", "decord", "torchcodec"]
# The optional backends: name -> (class, whether it can be used here).
OPTIONAL_BACKENDS = {
    "decord": (DecordBackend, decord_available),
    "torchcodec": (TorchCodecBackend, torchcodec_available),
}

__all__ = [
    "ClipSpec",
    "Clip",
    "FrameFormat",
    "VideoInfo",
    "VideoReader",
    "VideoReadError",
    "VideoTruncatedError",
    "VideoTruncatedWarning",
    "probe_video",
    "read_video",
    "sample_grid",
    "stream_video",
    "write_video",
    "side_by_side",
    "video_grid",
]


@dataclass
class Clip:
    """Frames read from one file.

    Attributes:
        frames: uint8 ``[F, C, H, W]``.
        indices: int64 ``[F]``, the frame index (in the file) of each returned frame.
        times: float64 ``[F]``, its presentation time in seconds from the first frame.
        info: the file's ``VideoInfo``.
    """

    frames: torch.Tensor
    indices: torch.Tensor
    times: torch.Tensor
    info: VideoInfo


def _open(path: str | Path, backend: Backend, index: FrameIndex):
    """The optional backend ``backend`` names, opened on ``path``; None for PyAV: when asked,
    for a truncated file, or (with a ``UserWarning`` that says why) when the backend is not
    usable here or cannot open the file."""
    if backend not in ("auto", "av", *OPTIONAL_BACKENDS):
        raise ValueError(f"backend must be auto, av, decord or torchcodec, got {backend!r}")
    if backend in ("auto", "av"):
        return None
    cls, usable = OPTIONAL_BACKENDS[backend]
    if not usable():
        _fall_back(path, f"backend={backend!r}: the package is not installed or cannot load")
        return None
    if index.info.truncated:
        return None
    try:
        return cls(path, index)
    except VideoReadError as err:
        _fall_back(path, err.reason)
        return None


def _fall_back(path: str | Path, reason: str) -> None:
    """Warn that ``path`` is decoded with PyAV instead, and why."""
    warnings.warn(f"{path}: {reason}; decoding with PyAV", UserWarning, stacklevel=4)


class VideoReader:
    """One open video file; indexes it once (``frame_index``), then reads any number of clips.

    Args:
        path: the video file.
        backend: ``"auto"`` or ``"av"``: PyAV, the fastest here at training sizes (it scales
            frames during decoding; benchmarks/video_io.md); ``"decord"`` or ``"torchcodec"``:
            that optional package, falling back to PyAV with a warning when it is not usable
            here, cannot open the file or fails while decoding (and silently for a truncated
            file). Every backend numbers frames by the file's ``FrameIndex``.
    Raises:
        VideoReadError: missing, empty, not a video, no video stream, no decoder, no frames.
    """

    def __init__(self, path: str | Path, backend: Backend = "auto"):
        self.path = str(path)
        self.index = frame_index(path)
        self.info: VideoInfo = self.index.info
        self.times: np.ndarray = self.index.times
        if self.info.num_frames == 0:
            raise VideoReadError(path, "no video frames in the file")
        self._av = PyAVBackend(path, self.index)
        self._fast = _open(path, backend, self.index)

    @property
    def backend(self) -> str:
        """The backend that decodes: ``"av"``, ``"decord"`` or ``"torchcodec"``."""
        return self._fast.name if self._fast is not None else "av"

    def grid(self, spec: ClipSpec | None = None) -> np.ndarray:
        """The sample grid int64 ``[G]`` of ``spec`` on this file (see ``sample_grid``)."""
        return sample_grid(self.times, self.info.fps, spec or ClipSpec())

    def num_clips(self, spec: ClipSpec) -> int:
        """How many non-overlapping clips of ``spec.num_frames`` the grid holds (1 without it)."""
        size = len(self.grid(spec))
        return size // spec.num_frames if spec.num_frames else int(size > 0)

    def clip_indices(
        self, spec: ClipSpec, offset: int | None = None, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Frame indices int64 ``[F]`` of one clip: at grid ``offset``, random, or the first."""
        grid = self.grid(spec)
        if spec.num_frames is None:
            if not len(grid):
                raise VideoReadError(self.path, "the clip range selects no frames")
            return grid
        if len(grid) < spec.num_frames:
            reason = f"clip needs {spec.num_frames} frames, only {len(grid)} available"
            raise VideoReadError(self.path, reason)
        last = len(grid) - spec.num_frames
        if offset is None:
            offset = (
                int((rng or np.random.default_rng()).integers(0, last + 1)) if spec.random else 0
            )
        if not 0 <= offset <= last:
            raise ValueError(f"clip offset {offset} outside [0, {last}]")
        return grid[offset : offset + spec.num_frames]

    def read(
        self,
        spec: ClipSpec | None = None,
        fmt: FrameFormat | None = None,
        *,
        offset: int | None = None,
        rng: np.random.Generator | None = None,
        allow_truncated: bool = False,
    ) -> Clip:
        """Read one clip: ``Clip.frames`` uint8 ``[F, C, H, W]`` (see ``clip_indices``)."""
        indices = self.clip_indices(spec or ClipSpec(), offset=offset, rng=rng)
        return self.read_indices(indices, fmt, allow_truncated=allow_truncated)

    def read_indices(
        self, indices: np.ndarray, fmt: FrameFormat | None = None, *, allow_truncated: bool = False
    ) -> Clip:
        """Read frames by index ``indices [F]`` (any order, repeats allowed) -> ``Clip``.

        Raises ``VideoTruncatedError`` when the file is truncated, unless ``allow_truncated``: then
        warns and returns only the requested frames that decode.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.info.num_frames):
            raise IndexError(f"{self.path}: frame index outside [0, {self.info.num_frames})")
        if self.info.truncated and not allow_truncated:
            self._truncated(False, self.info.num_frames)
        unique, inverse = np.unique(indices, return_inverse=True)
        fmt = fmt or FrameFormat()
        found, rgb = self._decode(unique, scaled_size(self.info.height, self.info.width, fmt))
        if self.info.truncated or len(found) < len(unique):
            self._truncated(allow_truncated, len(found) if len(found) < len(unique) else None)
        if len(found) < len(unique):
            keep = np.isin(indices, found)
            indices = indices[keep]
            inverse = np.searchsorted(found, indices)
        in_order = len(found) == len(indices) and np.array_equal(found, indices)
        frames = format_frames(rgb if in_order else rgb[inverse], fmt)
        times = torch.from_numpy(self.times[indices].copy())
        return Clip(frames, torch.from_numpy(indices.copy()), times, self.info)

    def _decode(
        self, unique: np.ndarray, size: tuple[int, int] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode sorted unique indices (at ``size`` where the backend scales) with the chosen
        backend, falling back to PyAV when an optional one fails."""
        if self._fast is not None:
            try:
                return self._fast.get(unique, size)
            except Exception as err:  # decord and torchcodec raise their own errors on bad data
                _fall_back(self.path, f"{self._fast.name} failed ({err})")
                self._fast = None
        return self._av.get(unique, size)

    def _truncated(self, allow: bool, decoded: int | None) -> None:
        """Raise ``VideoTruncatedError``, or warn when truncation is allowed."""
        info = self.info
        claim = f"header claims {info.header_frames} frames" if info.header_frames else "header"
        found = f", {decoded} decode" if decoded is not None else ""
        reason = f"truncated: {claim}, {info.num_frames} found{found} ({info.duration:.2f}s)"
        if not allow:
            raise VideoTruncatedError(
                self.path, reason, info.num_frames if decoded is None else decoded
            )
        warnings.warn(f"{self.path}: {reason}", VideoTruncatedWarning, stacklevel=3)


def probe_video(path: str | Path) -> VideoInfo:
    """Measure a file (frames counted by demuxing, fps from timestamps) -> ``VideoInfo``; the
    file's ``FrameIndex`` is built once and cached (see ``frame_index``).

    Raises ``VideoReadError`` for files that cannot be read; a truncated file probes fine, with
    ``info.truncated`` set.
    """
    return frame_index(path).info


def read_video(
    path: str | Path,
    spec: ClipSpec | None = None,
    fmt: FrameFormat | None = None,
    *,
    backend: Backend = "auto",
    rng: np.random.Generator | None = None,
    allow_truncated: bool = False,
) -> Clip:
    """Read one clip of ``path`` (default: every frame) -> ``Clip`` with frames uint8 ``[F, C, H, W]``."""
    return VideoReader(path, backend).read(spec, fmt, rng=rng, allow_truncated=allow_truncated)
