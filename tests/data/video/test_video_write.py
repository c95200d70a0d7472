"""The writer (mp4, avi, gif round trips, odd sizes) and the side-by-side and grid helpers."""

from __future__ import annotations

import pytest
import torch
from conftest import decode_index, index_image

from ttt_video.data.video.errors import VideoWriteError
from ttt_video.data.video.reader import (
    probe_video,
    read_video,
    side_by_side,
    video_grid,
    write_video,
)


def index_frames(n: int, h: int, w: int) -> torch.Tensor:
    """uint8 ``[n, 3, h, w]`` frames carrying their index."""
    return torch.stack([torch.from_numpy(index_image(i, h, w)).permute(2, 0, 1) for i in range(n)])


@pytest.mark.parametrize(
    "suffix,codec", [(".mp4", None), (".mp4", "mpeg4"), (".avi", None), (".gif", None)]
)
def test_write_round_trip(tmp_path, suffix, codec):
    path = write_video(tmp_path / f"out{suffix}", index_frames(12, 32, 48), fps=8, codec=codec)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (12, 48, 32)
    assert info.fps == pytest.approx(8, rel=0.01)  # gif delays are whole centiseconds
    frames = read_video(path).frames
    assert [decode_index(f.numpy()) for f in frames] == list(range(12))


def test_write_float_and_grayscale(tmp_path):
    frames = torch.linspace(0, 1, 6).view(6, 1, 1, 1).expand(6, 1, 16, 16)
    path = write_video(tmp_path / "gray.mp4", frames, fps=5, crf=0)
    back = read_video(path).frames.float().mean(dim=(1, 2, 3))
    assert torch.allclose(back, frames.mean(dim=(1, 2, 3)) * 255, atol=3)


def test_write_rejects_odd_size_unless_padded(tmp_path):
    frames = index_frames(3, 33, 47)
    with pytest.raises(VideoWriteError, match=r"odd.mp4: odd size 47x33"):
        write_video(tmp_path / "odd.mp4", frames, fps=5)
    info = probe_video(write_video(tmp_path / "odd.mp4", frames, fps=5, pad_to_even=True))
    assert (info.width, info.height) == (48, 34)
    assert probe_video(write_video(tmp_path / "odd.gif", frames, fps=5)).width == 47


@pytest.mark.parametrize(
    "frames,match",
    [
        (torch.zeros(3, 16, 16), r"\[F, C, H, W\]"),
        (torch.zeros(0, 3, 16, 16, dtype=torch.uint8), "no frames"),
    ],
)
def test_write_rejects_bad_tensors(tmp_path, frames, match):
    with pytest.raises(VideoWriteError, match=match):
        write_video(tmp_path / "bad.mp4", frames, fps=5)
    with pytest.raises(VideoWriteError, match="unknown suffix"):
        write_video(tmp_path / "bad.mov", torch.zeros(1, 3, 4, 4), fps=5)


def test_side_by_side_and_grid():
    a = torch.full((4, 3, 10, 12), 100, dtype=torch.uint8)
    b = torch.full((2, 1, 8, 6), 200, dtype=torch.uint8)
    joined = side_by_side(a, b, gap=2)
    assert joined.shape == (4, 3, 10, 12 + 2 + 12)
    assert joined[:, :, :10, :12].eq(100).all()
    assert joined[3, :, :8, 14:20].eq(200).all()
    assert joined[:, :, :, 12:14].eq(0).all()
    grid = video_grid([a, b, a], cols=2, gap=1)
    assert grid.shape == (4, 3, 10 * 2 + 1, 12 * 2 + 1)
    assert grid[:, :, 11:, :12].eq(100).all()
