"""One frame-numbering rule for every reader path, and the frame index built once per file."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import REORDERED, decode_index, make_video

from ttt_video.data.video import frame_index as fi
from ttt_video.data.video.backends import decord_available, torchcodec_available
from ttt_video.data.video.manifest import load_items
from ttt_video.data.video.reader import ClipSpec, FrameFormat, VideoReader, stream_video

EPS = 1e-4


def expected_indices(times: list[float], spec: ClipSpec) -> list[int]:
    """The frames ``spec`` selects from frames at ``times`` (seconds), by the documented rule:
    frame i is the i-th in presentation order; the range keeps frames with start <= t < end and
    start_frame <= i < end_frame; with fps, each target time takes the last frame shown by then."""
    n = len(times)
    kept = [
        i
        for i in range(n)
        if (spec.start is None or times[i] >= spec.start - EPS)
        and (spec.end is None or times[i] < spec.end - EPS)
        and (spec.start_frame is None or i >= spec.start_frame)
        and (spec.end_frame is None or i < spec.end_frame)
    ]
    if spec.fps is not None and kept:
        lo, hi = kept[0], kept[-1]
        if spec.end is not None:
            t_end = spec.end
        elif hi + 1 < n:
            t_end = times[hi + 1]
        else:
            t_end = times[-1] + (times[-1] - times[-2])
        picked, k = [], 0
        while times[lo] + k / spec.fps < t_end - EPS:
            target = times[lo] + k / spec.fps
            picked.append(max(i for i in kept if times[i] <= target + EPS))
            k += 1
        kept = picked
    kept = kept[:: spec.stride]
    return kept[: spec.num_frames] if spec.num_frames else kept


def pixel_indices(frames: torch.Tensor) -> list[int]:
    return [decode_index(f.numpy()) for f in frames]


def read_reader(backend: str):
    def read(path, spec, fmt):
        clip = VideoReader(path, backend=backend).read(spec, fmt)
        return clip.indices.tolist(), clip.frames

    return read


def read_stream(path, spec, fmt):
    frames = torch.cat(list(stream_video(path, chunk_size=5, spec=spec, fmt=fmt)))
    return None, frames


PATHS = {
    "reader-av": read_reader("av"),
    "reader-decord": pytest.param(
        read_reader("decord"),
        marks=pytest.mark.skipif(not decord_available(), reason="decord is not installed"),
    ),
    "reader-torchcodec": pytest.param(
        read_reader("torchcodec"),
        marks=pytest.mark.skipif(
            not torchcodec_available(), reason="torchcodec or FFmpeg's libraries are missing"
        ),
    ),
    "stream": read_stream,
}
# Specs by name, each made from the fixture's last frame time (so each reaches its late frames).
SPECS = {
    "start-end_frame": lambda last: ClipSpec(start=1.5, end_frame=60),  # seconds, then frames
    "start_frame-end": lambda last: ClipSpec(start_frame=41, end=0.95 * last),
    "start-stride": lambda last: ClipSpec(start=0.7, num_frames=9, stride=3),
    "late-stride": lambda last: ClipSpec(start=0.8 * last, stride=2),
    "fps-start": lambda last: ClipSpec(fps=7.0, start=0.5),
    "fps-up": lambda last: ClipSpec(fps=40.0, start_frame=17, end_frame=29),
}


@pytest.mark.parametrize("spec_name", list(SPECS))
@pytest.mark.parametrize("name", list(REORDERED))
@pytest.mark.parametrize("read", [PATHS[k] for k in PATHS], ids=list(PATHS))
def test_every_reader_path_selects_the_same_frames(videos, read, name, spec_name):
    n, times = REORDERED[name]
    spec = SPECS[spec_name](times[-1])
    expected = expected_indices(times, spec)
    assert expected, "the spec must select frames of this fixture"
    indices, frames = read(videos[name], spec, FrameFormat(size=(24, 32)))
    if indices is not None:
        assert indices == expected
    assert frames.shape == (len(expected), 3, 24, 32)
    assert pixel_indices(frames) == expected


def test_the_issue_case_frames_48_to_59(videos):
    spec = ClipSpec(start=2.0, end_frame=60)
    streamed = torch.cat(list(stream_video(videos["gop12"], chunk_size=8, spec=spec)))
    assert pixel_indices(streamed) == list(range(48, 60))


@pytest.mark.parametrize("name", list(REORDERED))
def test_index_counts_real_frames_and_times(videos, name):
    n, times = REORDERED[name]
    index = fi.build_frame_index(videos[name])
    assert index.info.num_frames == n
    np.testing.assert_allclose(index.times, times, atol=2e-3)
    assert index.keyframes[0] and index.seekable


def test_avi_header_claims_the_dropped_frames(videos):
    info = fi.build_frame_index(videos["avi_gaps"]).info
    n, times = REORDERED["avi_gaps"]
    assert info.header_frames == round(times[-1] * 25) + 1 > n
    assert not info.truncated


def test_random_reads_seek_far_in_sparse_keyframes(videos):
    reader = VideoReader(videos["sparse_keys"], backend="av")
    wanted = [329, 0, 151, 149, 300, 299, 150, 77]
    clip = reader.read_indices(np.array(wanted), FrameFormat(size=(24, 32)))
    assert clip.indices.tolist() == wanted == pixel_indices(clip.frames)


@pytest.fixture
def counted_builds(monkeypatch):
    """Clear the index cache and count the demux scans ``frame_index`` runs."""
    fi.clear_index_cache()
    calls = []
    scan = fi._scan_packets

    def counting(container, stream):
        calls.append(container.name)
        return scan(container, stream)

    monkeypatch.setattr(fi, "_scan_packets", counting)
    yield calls
    fi.clear_index_cache()


def test_a_file_is_demuxed_once_per_process(tmp_path, counted_builds):
    path = make_video(tmp_path / "a.mp4", 30)
    for _ in range(3):
        VideoReader(path, backend="av").read(ClipSpec(num_frames=4, random=True))
    list(stream_video(path, chunk_size=8))
    assert len(counted_builds) == 1
    os.utime(path, ns=(0, 10**18))  # modified: the cached index no longer applies
    assert VideoReader(path, backend="av").info.num_frames == 30
    assert len(counted_builds) == 2


def test_index_folder_is_read_and_stale_entries_rebuilt(tmp_path, counted_builds):
    root = tmp_path / "videos"
    (root / "cls").mkdir(parents=True)
    (root / fi.INDEX_DIR).mkdir()
    path = make_video(root / "cls" / "a.mp4", 30)
    first = fi.frame_index(path)
    entry = fi.index_file(path, root)
    assert entry == root / fi.INDEX_DIR / "cls" / "a.mp4.npz" and entry.exists()
    assert len(counted_builds) == 1
    fi.clear_index_cache()  # a new process (or DataLoader worker): reads the entry, no demux
    again = fi.frame_index(path)
    assert len(counted_builds) == 1
    np.testing.assert_array_equal(again.pts, first.pts)
    np.testing.assert_array_equal(again.times, first.times)
    assert again.info == first.info
    make_video(path, 40)  # the video changes: the entry is stale
    fi.clear_index_cache()
    assert fi.frame_index(path).info.num_frames == 40
    assert len(counted_builds) == 2
    fi.clear_index_cache()
    assert fi.frame_index(path).info.num_frames == 40  # the rewritten entry
    assert len(counted_builds) == 2


def test_prepare_index_writes_entries_that_readers_use(tmp_path, counted_builds, capsys):
    from ttt_video.apps.prepare import index as prepare_index

    root = tmp_path / "videos"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        make_video(root / name / "v.mp4", 12 if name == "cat" else 15)
    assert prepare_index.main([str(root), "--class_folders"]) == 0
    assert len(counted_builds) == 2 and "frame index" in capsys.readouterr().out
    assert (root / fi.INDEX_DIR / "dog" / "v.mp4.npz").exists()
    fi.clear_index_cache()
    assert VideoReader(root / "dog" / "v.mp4", backend="av").info.num_frames == 15
    assert len(counted_builds) == 2  # read from the entry, not demuxed
    assert load_items(root)[1] == ["cat", "dog"]  # the index folder is not a class
