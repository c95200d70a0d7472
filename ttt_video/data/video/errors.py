"""Exceptions and warnings of the video reader and writer, each naming the file and the reason."""

from __future__ import annotations

from pathlib import Path


class UnreadableDataError(ValueError):
    """Too many of a dataset's videos cannot be read to go on (the log names each one)."""


class VideoReadError(ValueError):
    """A video file cannot be read: missing, empty, not a video, unsupported codec, too short."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class VideoTruncatedError(VideoReadError):
    """A video file ends before its header says it should (truncated or over-reporting header).

    ``decoded`` is the number of frames that could be decoded before the end.
    """

    def __init__(self, path: str | Path, reason: str, decoded: int):
        self.decoded = decoded
        super().__init__(path, reason)


class VideoTruncatedWarning(UserWarning):
    """Raised as a warning instead of ``VideoTruncatedError`` when the caller allows truncation."""


class VideoWriteError(ValueError):
    """A video cannot be written: bad tensor shape or dtype, odd size for a 4:2:0 codec, ..."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
