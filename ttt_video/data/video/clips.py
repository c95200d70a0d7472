"""Clip sampling: which frame indices a ``ClipSpec`` takes from a file with given frame times.

Letters: N frames in the file, G entries in the sample grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ttt_video.validation import check_positive

# Timestamps closer than this (seconds) count as equal when sampling by time.
TIME_EPS = 1e-4


@dataclass(frozen=True)
class ClipSpec:
    """Which frames to take from a file (see the module docstring for the sample grid).

    Attributes:
        fps: target frame rate; None keeps every frame at the native rate.
        stride: keep every ``stride``-th grid entry.
        num_frames: clip length in grid entries; None takes the whole grid.
        start, end: clip range in seconds from the first frame (end exclusive).
        start_frame, end_frame: clip range in frame indices (end exclusive); not with start/end.
        random: start the clip at a random grid offset instead of the first one.
    """

    fps: float | None = None
    stride: int = 1
    num_frames: int | None = None
    start: float | None = None
    end: float | None = None
    start_frame: int | None = None
    end_frame: int | None = None
    random: bool = False

    def __post_init__(self):
        check_positive(self, "fps", allow_none=True)
        check_positive(self, "stride", integer=True)
        check_positive(self, "num_frames", integer=True, allow_none=True)
        if self.start is not None and self.start_frame is not None:
            raise ValueError("give start in seconds or start_frame, not both")
        if self.end is not None and self.end_frame is not None:
            raise ValueError("give end in seconds or end_frame, not both")


def _range(times: np.ndarray, spec: ClipSpec) -> tuple[int, int]:
    """The frame range ``[lo, hi)`` selected by the spec's start/end."""
    n = len(times)
    lo, hi = spec.start_frame or 0, n
    if spec.start is not None:
        lo = int(np.searchsorted(times, spec.start - TIME_EPS, side="left"))
    if spec.end_frame is not None:
        hi = min(n, spec.end_frame)
    if spec.end is not None:
        hi = int(np.searchsorted(times, spec.end - TIME_EPS, side="left"))
    return max(lo, 0), min(hi, n)


def last_frame_duration(times: np.ndarray, native_fps: float) -> float:
    """How long the last frame stays on screen: as long as the one before it (1 / fps if alone)."""
    return float(times[-1] - times[-2]) if len(times) > 1 else 1.0 / native_fps


def sample_grid(times: np.ndarray, native_fps: float, spec: ClipSpec) -> np.ndarray:
    """Frame indices int64 ``[G]`` the spec samples from a file with frame ``times [N]`` (seconds).

    With ``spec.fps`` set, target times ``t0 + k / fps`` run to the end of the range (``end``, the
    first frame past the range, or the file's last frame plus its duration) and each maps to the
    last frame whose timestamp is <= the target (frames repeat when upsampling).
    """
    lo, hi = _range(times, spec)
    if lo >= hi:
        return np.zeros(0, dtype=np.int64)
    if spec.fps is None:
        grid = np.arange(lo, hi, dtype=np.int64)
    else:
        if spec.end is not None:
            t_end = spec.end
        elif hi < len(times):
            t_end = times[hi]
        else:
            t_end = times[hi - 1] + last_frame_duration(times, native_fps)
        targets = times[lo] + np.arange(0, t_end - times[lo] - TIME_EPS, 1.0 / spec.fps)
        grid = np.searchsorted(times, targets + TIME_EPS, side="right").astype(np.int64) - 1
        grid = np.clip(grid, lo, hi - 1)
    return grid[:: spec.stride]
