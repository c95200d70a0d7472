"""Streaming: same frames as the reader, fixed-size chunks, bounded memory on long files."""

from __future__ import annotations

import tracemalloc

import pytest
import torch
from conftest import decode_index, make_video

from ttt_video.data.video.reader import (
    ClipSpec,
    FrameFormat,
    VideoReader,
    VideoTruncatedError,
    VideoTruncatedWarning,
    stream_video,
)

SPECS = [
    ClipSpec(),
    ClipSpec(stride=4),
    ClipSpec(fps=10),
    ClipSpec(fps=48, end_frame=5),
    ClipSpec(start=1.0, end=2.5),
    ClipSpec(start_frame=7, num_frames=9, stride=2),
    ClipSpec(fps=12, start=2.0, num_frames=4),
]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("name", ["h264", "vfr"])
def test_stream_matches_reader(videos, name, spec):
    ref = VideoReader(videos[name], backend="av").read(spec).frames
    chunks = list(stream_video(videos[name], chunk_size=7, spec=spec))
    assert all(c.shape[0] == 7 for c in chunks[:-1]) and 1 <= chunks[-1].shape[0] <= 7
    assert torch.equal(torch.cat(chunks), ref)


def test_stream_single_frames_and_format(videos):
    frames = list(stream_video(videos["mpeg4_odd"], fmt=FrameFormat(size=16, channels=1)))
    assert len(frames) == 40
    assert all(f.shape == (1, 16, 16) and f.dtype == torch.uint8 for f in frames)


def test_stream_rejects_random_and_bad_chunk(videos):
    with pytest.raises(ValueError, match="random"):
        next(stream_video(videos["h264"], spec=ClipSpec(random=True)))
    with pytest.raises(ValueError, match="chunk_size"):
        next(stream_video(videos["h264"], chunk_size=0))


def test_stream_truncated_file(videos):
    with pytest.raises(VideoTruncatedError):
        for _ in stream_video(videos["truncated"], chunk_size=16):
            pass
    with pytest.warns(VideoTruncatedWarning):
        frames = torch.cat(list(stream_video(videos["truncated"], 16, allow_truncated=True)))
    assert [decode_index(f.numpy()) for f in frames] == list(range(len(frames)))


def test_stream_memory_is_bounded_by_the_chunk(tmp_path):
    n, h, w, chunk = 1200, 48, 64, 16
    path = make_video(tmp_path / "long.mp4", n, (h, w), fps=30)
    frame_bytes = h * w * 3
    tracemalloc.start()
    try:
        count, held = 0, 0
        for frames in stream_video(path, chunk_size=chunk):
            count += frames.shape[0]
            held = max(held, frames.shape[0])
            last = decode_index(frames[-1].numpy())
        _, stream_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        VideoReader(path, backend="av").read(ClipSpec(num_frames=n // 2))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n and held == chunk and last == n - 1
    assert stream_peak < 3 * chunk * frame_bytes
    assert read_peak > (n // 2) * frame_bytes
