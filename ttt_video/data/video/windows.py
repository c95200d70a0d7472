"""Random windows of one video file, decoded from the file item by item: the data of a model
fitted on a single file (``demo predict`` without a checkpoint, ``video_predict`` with
``data.source: file``).

Letters: G frames of the file's sample grid, F frames per window, C channels, H height, W width.

Items are ``{"frames": uint8 [F, C, H, W]}`` like every video dataset's; item ``i`` starts at a
random grid offset drawn from ``(seed, epoch, i)`` (``ttt_video.data.epochs``), so the windows
change from epoch to epoch and do not depend on the loader's workers. Memory does not grow with
the file: the dataset holds the reader's frame index and the sample grid (a few numbers per
frame) and decodes only the frames of the window it returns, seeking to the keyframe before it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ttt_video.data.epochs import EpochDataModule, item_rng
from ttt_video.data.video.clips import ClipSpec
from ttt_video.data.video.errors import VideoReadError
from ttt_video.data.video.frames import FrameFormat
from ttt_video.data.video.reader import VideoReader


class VideoWindows(Dataset):
    """``length`` windows of ``num_frames`` consecutive grid frames of the video file ``path``.

    Args:
        path: the video file.
        num_frames: ``F``, frames per window.
        length: windows per epoch.
        spec: which frames of the file form the grid (range, ``fps``, ``stride``; its
            ``num_frames`` and ``random`` are not used).
        fmt: frame size and channels of the returned windows.
        seed: seeds the window offsets.

    The reader is PyAV's: it opens the file for each read, so one dataset can be shared by the
    loader's worker processes (forked or pickled) without sharing a file position.

    Raises:
        VideoReadError: the file cannot be read.
        ValueError: the grid holds fewer than ``num_frames`` frames.
    """

    def __init__(
        self,
        path: str | Path,
        num_frames: int,
        length: int,
        spec: ClipSpec | None = None,
        fmt: FrameFormat | None = None,
        seed: int = 0,
    ):
        self.reader = VideoReader(path, backend="av")
        self.grid: np.ndarray = self.reader.grid(spec or ClipSpec())
        if len(self.grid) < num_frames:
            raise ValueError(
                f"num_frames: windows of {num_frames} frames need a video of at least as many, "
                f"{path} has {len(self.grid)}"
            )
        self.num_frames, self.length, self.seed = num_frames, length, seed
        self.fmt = fmt or FrameFormat()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        """``{"frames": uint8 [F, C, H, W]}``: the window at the item's random grid offset."""
        rng = item_rng(self.seed, index, self.length)
        start = int(rng.integers(0, len(self.grid) - self.num_frames + 1))
        wanted = self.grid[start : start + self.num_frames]
        clip = self.reader.read_indices(wanted, self.fmt, allow_truncated=True)
        if clip.frames.shape[0] < self.num_frames:
            raise VideoReadError(
                self.reader.path,
                f"frames {wanted[0]}..{wanted[-1]} decode only {clip.frames.shape[0]} of "
                f"{self.num_frames} (the file stops decoding part-way); fit on fewer frames",
            )
        return {"frames": clip.frames}


class VideoFileDataModule(EpochDataModule):
    """Training windows of one video file (no validation data: the file is the whole data).

    Args:
        path: the video file.
        fmt: frame size and channels.
        num_frames: ``F``, frames per window.
        length: windows per epoch.
        fps: resample to this rate (None: every frame).
        max_frames: keep only the first this many frames (None: all).
    """

    def __init__(
        self,
        path: str | Path,
        fmt: FrameFormat,
        num_frames: int,
        length: int,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        fps: float | None = None,
        max_frames: int | None = None,
    ):
        super().__init__(batch_size, num_workers, seed)
        self.path, self.fmt, self.num_frames, self.length = Path(path), fmt, num_frames, length
        self.spec = ClipSpec(fps=fps, end_frame=max_frames)

    def setup(self, stage: str | None = None) -> None:
        """Index the file (its frame times, no decoding) and sample windows from it."""
        self.train = VideoWindows(
            self.path, self.num_frames, self.length, self.spec, self.fmt, self.seed
        )

    def val_dataloader(self):
        return []
