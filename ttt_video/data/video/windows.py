"""Random windows of one video held in memory: the data of a model fitted on a single file
(``demo predict`` without a checkpoint, ``video_predict`` with ``data.source: file``).

Letters: T frames kept from the file, F frames per window, C channels, H height, W width.

Items are ``{"frames": uint8 [F, C, H, W]}`` like every video dataset's; item ``i`` starts at a
random frame drawn from ``(seed, epoch, i)`` (``ttt_video.data.epochs``), so the windows change
from epoch to epoch and do not depend on the loader's workers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from ttt_video.data.epochs import EpochDataModule, item_rng
from ttt_video.data.video.clips import ClipSpec
from ttt_video.data.video.frames import FrameFormat
from ttt_video.data.video.reader import read_video


class VideoWindows(Dataset):
    """``length`` windows of ``num_frames`` consecutive frames of ``frames`` uint8 ``[T, C, H, W]``."""

    def __init__(self, frames: torch.Tensor, num_frames: int, length: int, seed: int = 0):
        if frames.shape[0] < num_frames:
            raise ValueError(
                f"num_frames: windows of {num_frames} frames need a video of at least as many, "
                f"got {frames.shape[0]}"
            )
        self.frames, self.num_frames, self.length, self.seed = frames, num_frames, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = item_rng(self.seed, index, self.length)
        start = int(rng.integers(0, self.frames.shape[0] - self.num_frames + 1))
        return {"frames": self.frames[start : start + self.num_frames]}


class VideoFileDataModule(EpochDataModule):
    """Training windows of one video file (no validation data: the file is the whole data).

    Args:
        path: the video file.
        fmt: frame size and channels (frames are read once, in ``setup``).
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
        """Decode the kept frames of the file and cut the training windows from them."""
        clip = read_video(self.path, self.spec, self.fmt, allow_truncated=True)
        self.train = VideoWindows(clip.frames, self.num_frames, self.length, self.seed)

    def val_dataloader(self):
        return []
