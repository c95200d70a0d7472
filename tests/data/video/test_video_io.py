"""The video reader: exact dense sampling, metadata, bad input, backends."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from conftest import decode_index, make_video

from ttt_video.data.video import reader as reader_module
from ttt_video.data.video.backends import decord_available, torchcodec_available
from ttt_video.data.video.reader import (
    ClipSpec,
    FrameFormat,
    VideoReader,
    VideoReadError,
    VideoTruncatedError,
    VideoTruncatedWarning,
    probe_video,
    read_video,
)

READABLE = ["h264", "mpeg4_odd", "x264_odd", "gif", "vfr", "one"]


def pixel_indices(frames: torch.Tensor) -> list[int]:
    """The index each returned frame ``[F, C, H, W]`` carries in its pixels."""
    return [decode_index(f.numpy()) for f in frames]


def plain_decode(path) -> np.ndarray:
    """Every frame by a plain PyAV loop: RGB ``[N, H, W, 3]``."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("name", READABLE)
def test_read_all_matches_plain_pyav(videos, name):
    clip = read_video(videos[name], backend="av")
    ref = plain_decode(videos[name])
    assert clip.frames.dtype == torch.uint8
    assert torch.equal(clip.frames, torch.from_numpy(ref).permute(0, 3, 1, 2))
    assert clip.indices.tolist() == list(range(len(ref))) == pixel_indices(clip.frames)
    assert clip.info.num_frames == len(ref)


# h264 fixture: 90 frames at 24 fps.
DENSE_CASES = [
    (ClipSpec(), list(range(90))),
    (ClipSpec(stride=4), list(range(0, 90, 4))),
    (ClipSpec(fps=8), list(range(0, 90, 3))),
    (ClipSpec(fps=10), [k * 24 // 10 for k in range(38)]),
    (ClipSpec(fps=48, end_frame=3), [0, 0, 1, 1, 2, 2]),
    (ClipSpec(start=1.0, end=2.0), list(range(24, 48))),
    (ClipSpec(start_frame=70, end_frame=80, stride=3), [70, 73, 76, 79]),
    (ClipSpec(num_frames=5, start_frame=60), list(range(60, 65))),
    (ClipSpec(fps=12, num_frames=4, start=2.0), [48, 50, 52, 54]),
]


@pytest.mark.parametrize("spec,expected", DENSE_CASES)
def test_dense_sampling_returns_exact_frames(videos, spec, expected):
    clip = VideoReader(videos["h264"], backend="av").read(spec)
    assert clip.indices.tolist() == expected
    assert pixel_indices(clip.frames) == expected
    assert torch.allclose(clip.times, torch.tensor(expected, dtype=torch.float64) / 24)


def test_random_clips_are_seeded_and_seek_correctly(videos):
    reader = VideoReader(videos["h264"], backend="av")
    spec = ClipSpec(num_frames=6, stride=2, random=True)
    starts = set()
    for seed in range(8):
        a = reader.read(spec, rng=np.random.default_rng(seed))
        b = reader.read(spec, rng=np.random.default_rng(seed))
        assert torch.equal(a.frames, b.frames)
        first = a.indices[0].item()
        assert a.indices.tolist() == list(range(first, first + 12, 2))
        assert pixel_indices(a.frames) == a.indices.tolist()
        starts.add(first)
    assert len(starts) > 2


def test_read_indices_any_order_with_repeats_and_far_seeks(videos, tmp_path):
    long = make_video(tmp_path / "long.mp4", 400, (32, 48), fps=25)
    reader = VideoReader(long, backend="av")
    wanted = [399, 3, 250, 3, 0, 398, 131]
    clip = reader.read_indices(np.array(wanted))
    assert clip.indices.tolist() == wanted == pixel_indices(clip.frames)


def test_variable_frame_rate_samples_by_timestamp(videos):
    reader = VideoReader(videos["vfr"], backend="av")
    times = reader.times
    assert reader.info.num_frames == 50
    assert reader.info.fps == pytest.approx(49 / times[-1])
    clip = reader.read(ClipSpec(fps=20))
    targets = np.arange(len(clip.indices)) / 20
    expected = np.searchsorted(times, targets + 1e-4, side="right") - 1
    assert clip.indices.tolist() == expected.tolist() == pixel_indices(clip.frames)


def test_resize_modes_and_grayscale(videos):
    path = videos["mpeg4_odd"]  # 47 x 35
    for mode in ("crop", "pad", "stretch"):
        clip = read_video(path, ClipSpec(num_frames=3), FrameFormat(size=(20, 30), resize=mode))
        assert clip.frames.shape == (3, 3, 20, 30)
    padded = read_video(path, ClipSpec(num_frames=1), FrameFormat(size=40, resize="pad")).frames
    assert padded[..., :, :5].max() == 0 and padded[..., :, -5:].max() == 0
    gray = read_video(path, ClipSpec(num_frames=2), FrameFormat(channels=1)).frames
    assert gray.shape == (2, 1, 47, 35)
    assert pixel_indices(gray) == [0, 1]


def test_header_without_frame_count_or_duration(videos):
    info = probe_video(videos["x264_odd"])
    assert info.header_frames is None
    assert (info.num_frames, info.width, info.height, info.fps) == (30, 49, 33, 15.0)
    assert info.duration == pytest.approx(2.0, abs=1e-3)


def test_truncated_file_raises_or_returns_decodable_frames(videos):
    path = videos["truncated"]
    info = probe_video(path)
    assert info.truncated and info.header_frames == 120 and info.num_frames < 120
    with pytest.raises(VideoTruncatedError, match="truncated.mp4.*truncated"):
        read_video(path)
    with pytest.warns(VideoTruncatedWarning):
        clip = read_video(path, allow_truncated=True)
    assert 0 < len(clip.indices) <= info.num_frames
    assert clip.indices.tolist() == list(range(len(clip.indices))) == pixel_indices(clip.frames)


BAD = [
    ("missing", "file not found"),
    ("empty", "empty file"),
    ("text", "not a readable video container"),
    ("unknown_codec", "unsupported codec"),
]


@pytest.mark.parametrize("name,reason", BAD)
def test_bad_files_raise_naming_file_and_reason(videos, name, reason):
    with pytest.raises(VideoReadError) as err:
        read_video(videos[name])
    assert err.value.path == str(videos[name])
    assert reason in err.value.reason
    assert videos[name].name in str(err.value)


def test_too_short_for_clip(videos):
    clip = read_video(videos["one"])
    assert clip.frames.shape == (1, 3, 48, 64)
    with pytest.raises(VideoReadError, match="clip needs 4 frames, only 1"):
        read_video(videos["one"], ClipSpec(num_frames=4))
    with pytest.raises(VideoReadError, match="selects no frames"):
        read_video(videos["one"], ClipSpec(start=5.0))


def test_spec_validation():
    with pytest.raises(ValueError):
        ClipSpec(stride=0)
    with pytest.raises(ValueError):
        ClipSpec(start=1.0, start_frame=3)
    with pytest.raises(ValueError):
        FrameFormat(resize="zoom")


OPTIONAL = {"decord": decord_available(), "torchcodec": torchcodec_available()}


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(b, marks=pytest.mark.skipif(not ok, reason=f"{b} is not usable"))
        for b, ok in OPTIONAL.items()
    ],
)
@pytest.mark.parametrize("name", ["h264", "mpeg4_odd", "x264_odd", "vfr"])
def test_optional_backend_agrees_with_pyav_frame_for_frame(videos, name, backend):
    spec = ClipSpec(stride=3)
    a = VideoReader(videos[name], backend="av").read(spec)
    d = VideoReader(videos[name], backend=backend).read(spec)
    assert d.indices.tolist() == a.indices.tolist() == pixel_indices(d.frames)
    diff = (a.frames.int() - d.frames.int()).abs()
    assert diff.float().mean() < 1.0 and diff.max() <= 8


def test_auto_decodes_with_pyav(videos):
    assert VideoReader(videos["h264"]).backend == "av"
    assert VideoReader(videos["h264"], backend="auto").backend == "av"
    with pytest.raises(ValueError, match="backend must be"):
        VideoReader(videos["h264"], backend="opencv")


class FailingBackend:
    """An optional backend that opens every file and fails on every read."""

    name = "failing"

    def __init__(self, path, index):
        self.index = index

    def get(self, wanted, size=None):
        raise RuntimeError("corrupt data")


def test_optional_backends_fall_back_to_pyav_with_a_warning(videos, monkeypatch):
    monkeypatch.setitem(reader_module.OPTIONAL_BACKENDS, "decord", (FailingBackend, lambda: False))
    with pytest.warns(UserWarning, match="'decord': the package is not installed or cannot load"):
        assert VideoReader(videos["h264"], backend="decord").backend == "av"
    monkeypatch.setitem(reader_module.OPTIONAL_BACKENDS, "decord", (FailingBackend, lambda: True))
    reader = VideoReader(videos["h264"], backend="decord")
    assert reader.backend == "failing"
    with pytest.warns(UserWarning, match="failing failed .corrupt data.; decoding with PyAV"):
        clip = reader.read(ClipSpec(start_frame=30, num_frames=5))
    assert pixel_indices(clip.frames) == list(range(30, 35)) and reader.backend == "av"
    assert VideoReader(videos["truncated"], backend="decord").backend == "av"


@pytest.mark.skipif(not decord_available(), reason="decord is not installed (pip install decord)")
def test_decord_cannot_open_gif_and_pyav_reads_it(videos):
    with pytest.warns(UserWarning, match="decord cannot open"):
        reader = VideoReader(videos["gif"], backend="decord")
    assert reader.backend == "av"
    assert pixel_indices(reader.read().frames) == list(range(20))
