"""The reader on the real clips of docs/data.md (fetched by data_prep/fetch_clips.py into the cache)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from ttt_video.data.fetch import CLIPS, clip_path
from ttt_video.data.video.backends import decord_available, torchcodec_available
from ttt_video.data.video.frames import format_frames
from ttt_video.data.video.reader import ClipSpec, FrameFormat, VideoReader, stream_video


def need(name: str):
    path = clip_path(name)
    if path is None:
        pytest.skip(f"{name} not in the cache: run ttt-video prepare clips")
    return path


def plain_frames(path, indices) -> np.ndarray:
    """Frames at ``indices`` by decoding everything with a plain PyAV loop: ``[K, H, W, 3]``."""
    wanted = set(indices)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack([frames[i] for i in indices if i in wanted])


EXPECTED = {  # name -> (frames, width, height, codec), as docs/data.md lists them
    "vtest.avi": (795, 768, 576, "msmpeg4v3"),
    "tree.avi": (68, 320, 240, "cinepak"),
    "cockatoo.mp4": (280, 1280, 720, "h264"),
    "realshort.mp4": (36, 320, 240, "h264"),
}


@pytest.mark.parametrize("name", list(CLIPS))
def test_real_clip_metadata_and_dense_sampling(name):
    path = need(name)
    reader = VideoReader(path, backend="av")
    frames, width, height, codec = EXPECTED[name]
    info = reader.info
    assert (info.num_frames, info.width, info.height) == (frames, width, height)
    assert info.codec.startswith(codec[:5]) and not info.truncated
    spec = ClipSpec(num_frames=8, stride=3, random=True)
    clip = reader.read(spec, rng=np.random.default_rng(0))
    ref = plain_frames(path, clip.indices.tolist())
    assert torch.equal(clip.frames, torch.from_numpy(ref).permute(0, 3, 1, 2))


def test_tree_header_over_reports_frames():
    path = need("tree.avi")
    reader = VideoReader(path, backend="av")
    assert reader.info.header_frames == 444 and reader.info.num_frames == 68
    chunks = list(stream_video(path, chunk_size=16, fmt=FrameFormat(size=32)))
    assert sum(c.shape[0] for c in chunks) == 68


def test_stream_vtest_matches_reader():
    path = need("vtest.avi")
    spec = ClipSpec(start=30.0, end=40.0, fps=5)
    ref = VideoReader(path, backend="av").read(spec, FrameFormat(size=(72, 96))).frames
    got = torch.cat(list(stream_video(path, 8, spec, FrameFormat(size=(72, 96)))))
    assert ref.shape == (50, 3, 72, 96) and torch.equal(got, ref)


USABLE = {"av": True, "decord": decord_available(), "torchcodec": torchcodec_available()}
BACKENDS = [
    pytest.param(b, marks=pytest.mark.skipif(not ok, reason=f"{b} is not usable here"))
    for b, ok in USABLE.items()
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_return_the_frames_of_a_plain_decode_on_cockatoo(backend):
    # cockatoo.mp4's codec parameters sit in its first packets only: a first read that seeks to
    # its second keyframe (frame 76) decodes corrupt frames unless the decoder is primed.
    path = need("cockatoo.mp4")
    spec = ClipSpec(start_frame=100, num_frames=6, stride=5)
    clip = VideoReader(path, backend=backend).read(spec)
    assert clip.indices.tolist() == list(range(100, 130, 5))
    ref = torch.from_numpy(plain_frames(path, clip.indices.tolist())).permute(0, 3, 1, 2)
    assert (clip.frames.float() - ref.float()).abs().mean() < 1.0


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("backend", BACKENDS)
def test_decoding_at_the_target_size_matches_torch_resize(backend, size):
    # The reader scales while decoding; the reference resizes full frames with torch's
    # antialiased bilinear interpolation, the reader's path before (``format_frames``).
    path = need("cockatoo.mp4")
    spec, fmt = ClipSpec(start_frame=100, num_frames=8, stride=3), FrameFormat(size=size)
    full = plain_frames(path, list(range(100, 124, 3)))
    clip = VideoReader(path, backend=backend).read(spec, fmt)
    assert clip.frames.shape == (8, 3, size, size)
    diff = (clip.frames.int() - format_frames(full, fmt).int()).abs().float()
    assert diff.mean() < 0.3 and diff.flatten().quantile(0.99) <= 2 and diff.max() <= 16
