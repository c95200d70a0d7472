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
from ttt_video.data.video.writer import caption, comparison_video


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


def test_gif_keeps_a_grey_ramp_exact_and_untinted(tmp_path):
    """An adaptive palette: 256 grey levels come back within 2 levels, with R == G == B (the
    fixed rgb8 palette made 16 tinted bands of them)."""
    ramp = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256).expand(3, 1, 8, 256)
    back = read_video(write_video(tmp_path / "ramp.gif", ramp, fps=4)).frames.int()
    assert back.shape == (3, 3, 8, 256)
    assert (back - ramp.int()).abs().max() <= 2
    assert back[:, 0].eq(back[:, 1]).all() and back[:, 1].eq(back[:, 2]).all()


def test_gif_of_many_colours_stays_close(tmp_path):
    """More than 256 colours: one palette for the whole video, quantised and dithered (so the
    colours hold on average over 8x8 blocks)."""
    x, y = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 96), indexing="ij")
    video = torch.stack([torch.stack((x, y, (x + y + t / 4) % 1)) for t in range(4)])
    back = read_video(write_video(tmp_path / "colours.gif", video, fps=4)).frames.float() / 255
    blur = torch.nn.functional.avg_pool2d
    assert (blur(back, 8) - blur(video, 8)).abs().mean() < 0.02


def test_caption_adds_a_strip_of_text_per_frame():
    frames = torch.full((3, 1, 20, 64), 0.5)
    out = caption(frames, "truth", ["given", "+1", "+2"])
    assert out.shape == (3, 1, 34, 64) and out.dtype == frames.dtype
    assert out[:, :, 14:].eq(0.5).all()  # the frames themselves are untouched
    strips = out[:, 0, :14]
    assert strips.max() > 0.9 and strips.min() == 0.0  # light text on black
    assert strips[0].ne(strips[1]).any() and strips[1].ne(strips[2]).any()
    assert strips[:, :, :20].eq(strips[0, :, :20]).all()  # the left text is the same
    as_bytes = caption(torch.zeros(1, 3, 8, 40, dtype=torch.uint8), "x")
    assert as_bytes.dtype == torch.uint8 and as_bytes.shape == (1, 3, 22, 40)
    with pytest.raises(ValueError, match="one text or 3"):
        caption(frames, ["a", "b"])


def test_comparison_video_is_upscaled_and_captioned():
    truth, pred = torch.zeros(5, 1, 16, 16), torch.ones(5, 1, 16, 16)
    video = comparison_video(truth, pred, context=2, name="TTT-Linear", scale=4)
    assert video.shape == (5, 1, 14 + 64, 64 + 4 + 64)
    assert video[:, :, 14:, 68:].eq(1).all() and video[:, :, 14:, :64].eq(0).all()
    tags = video[:, 0, :14, 40:64]  # the right end of the truth panel's strip
    assert tags[0].eq(tags[1]).all() and tags[1].ne(tags[2]).any()  # given, given, +1
