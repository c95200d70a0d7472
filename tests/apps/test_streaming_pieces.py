"""The pieces that let the demos run on files of any length: random windows decoded from the
file (the fit's data), chunk-by-chunk video encoding, and bounded per-frame summaries."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from ttt_video.apps.series import BinnedSeries
from ttt_video.data.video.errors import VideoWriteError
from ttt_video.data.video.frames import FrameFormat
from ttt_video.data.video.windows import VideoFileDataModule, VideoWindows
from ttt_video.data.video.writer import VideoWriter, write_video


def brightness_clip(path, frames: int = 40):
    """A grey clip whose frame ``t`` has brightness ``6 t`` (its index, readable after coding)."""
    x = torch.arange(frames, dtype=torch.uint8).mul(6).view(-1, 1, 1, 1).expand(-1, 3, 32, 32)
    return write_video(path, x.contiguous(), fps=10, crf=0)


def frame_numbers(frames: torch.Tensor) -> list[int]:
    """The index each frame of ``brightness_clip`` shows: ``[F, C, H, W]`` -> ``F`` ints."""
    return [round(float(f.float().mean()) / 6) for f in frames]


def test_windows_are_consecutive_frames_of_the_kept_range(tmp_path):
    clip = brightness_clip(tmp_path / "count.mp4")
    data = VideoFileDataModule(
        clip, FrameFormat(size=16), num_frames=6, length=20, batch_size=4, max_frames=25
    )
    data.setup("fit")
    starts = set()
    for batch in data.train_dataloader():
        assert batch["frames"].shape == (4, 6, 3, 16, 16) and batch["frames"].dtype == torch.uint8
        for window in batch["frames"]:
            numbers = frame_numbers(window)
            assert numbers == list(range(numbers[0], numbers[0] + 6))
            assert 0 <= numbers[0] and numbers[-1] < 25  # max_frames: only the first 25
            starts.add(numbers[0])
    assert len(starts) > 5  # random offsets, not one window repeated
    with pytest.raises(ValueError, match="windows of 30 frames"):
        VideoWindows(clip, 30, length=2, spec=data.spec)


def test_writer_encodes_chunk_by_chunk(tmp_path):
    frames = torch.rand(23, 3, 31, 40)
    path = tmp_path / "chunks.mp4"
    with VideoWriter(path, fps=8, crf=0, pad_to_even=True) as writer:
        for start in range(0, 23, 5):
            writer.write(frames[start : start + 5])
    assert writer.frames_written == 23
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 23 and decoded[0].shape == (32, 40, 3)  # odd height padded
    with pytest.raises(VideoWriteError, match="frames of 40x28 after frames of 40x30"):
        with VideoWriter(tmp_path / "sizes.mp4", fps=8) as writer:
            writer.write(frames[:2, :, :30])
            writer.write(frames[:2, :, :28])
    with pytest.raises(VideoWriteError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", fps=8):
            pass
    assert not (tmp_path / "empty.mp4").exists()
    with pytest.raises(VideoWriteError, match="GIF"):
        VideoWriter(tmp_path / "x.gif", fps=8)


def test_binned_series_keeps_bin_means_in_bounded_memory():
    series = BinnedSeries(2, capacity=8)
    values = np.arange(100.0)
    for v in values:
        series.add(v, 2 * v)
    # 100 rows in at most 8 bins: width 16 (8 x 8 < 100 <= 8 x 16), the last bin part-filled.
    assert series.width == 16 and series.sums.shape == (8, 2)
    expected = [values[i : i + 16].mean() for i in range(0, 100, 16)]
    assert np.allclose(series.means()[:, 0], expected)
    assert np.allclose(series.means()[:, 1], 2 * np.array(expected))
    assert np.allclose(series.total_mean(), [values.mean(), 2 * values.mean()])
    assert np.isnan(BinnedSeries(1).total_mean()).all()
