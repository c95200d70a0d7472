"""Video fixtures made at test time with PyAV; each frame carries its own index in its pixels.

A frame is three vertical bands holding the base-16 digits of its index as gray levels
``16 * digit + 8``, so ``decode_index`` recovers the index through lossy codecs and resizing.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest


def index_image(i: int, h: int, w: int) -> np.ndarray:
    """RGB uint8 ``[h, w, 3]`` whose three vertical bands encode ``i`` (0 <= i < 4096)."""
    img = np.empty((h, w, 3), dtype=np.uint8)
    edges = np.linspace(0, w, 4).round().astype(int)
    for band, digit in enumerate((i // 256, (i // 16) % 16, i % 16)):
        img[:, edges[band] : edges[band + 1]] = 16 * digit + 8
    return img


def decode_index(frame: np.ndarray) -> int:
    """Recover the index from a frame ``[C, H, W]`` or ``[H, W, C]`` made by ``index_image``."""
    x = np.asarray(frame, dtype=np.float64)
    if x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(1, 2, 0)
    h, w = x.shape[:2]
    edges = np.linspace(0, w, 4)
    digits = []
    for band in range(3):
        lo, hi = edges[band], edges[band + 1]
        centre = x[h // 4 : h - h // 4 or h, int(lo + (hi - lo) / 4) : int(hi - (hi - lo) / 4) or 1]
        digits.append(int(np.clip(round((centre.mean() - 8) / 16), 0, 15)))
    return digits[0] * 256 + digits[1] * 16 + digits[2]


def make_video(
    path: Path,
    n: int,
    size: tuple[int, int] = (48, 64),
    fps: int = 24,
    codec: str = "libx264",
    pix: str = "yuv420p",
    fmt: str = "mp4",
    pts_ms: list[int] | None = None,
    options: dict | None = None,
    codec_options: dict | None = None,
    pts: list[int] | None = None,
) -> Path:
    """Encode ``n`` index frames of ``size`` (H, W); ``pts_ms`` gives variable frame times in
    milliseconds, ``pts`` in frames of ``1 / fps`` (a gap is a dropped frame); ``codec_options``
    replace the x264 defaults (e.g. keyframe spacing and B-frames)."""
    h, w = size
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        if codec_options is not None:
            stream.options = codec_options
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(index_image(i, h, w), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Named fixture files: codecs, odd sizes, variable frame rate, a truncated file, bad files."""
    d = tmp_path_factory.mktemp("videos")
    out = {
        "h264": make_video(d / "h264.mp4", 90, fps=24),
        "mpeg4_odd": make_video(d / "odd.avi", 40, (47, 35), 10, "mpeg4", fmt="avi"),
        "x264_odd": make_video(d / "odd444.mkv", 30, (33, 49), 15, pix="yuv444p", fmt="matroska"),
        "gif": make_video(d / "anim.gif", 20, (32, 48), 10, "gif", "rgb8", "gif"),
        "one": make_video(d / "one.mp4", 1),
    }
    rng = np.random.default_rng(0)
    pts = [0, *np.cumsum(rng.integers(20, 150, 49)).tolist()]
    out["vfr"] = make_video(d / "vfr.mkv", 50, fps=25, fmt="matroska", pts_ms=pts)
    out.update(reordered_videos(d))
    faststart = make_video(d / "fs.mp4", 120, options={"movflags": "faststart"})
    data = faststart.read_bytes()
    out["truncated"] = d / "truncated.mp4"
    out["truncated"].write_bytes(data[: int(len(data) * 0.6)])
    out["text"] = d / "notes.mp4"
    out["text"].write_text("this is not a video\n" * 20)
    out["empty"] = d / "empty.mp4"
    out["empty"].touch()
    out["missing"] = d / "missing.mp4"
    avi = make_video(d / "m.avi", 10, fps=10, codec="mpeg4", fmt="avi").read_bytes()
    out["unknown_codec"] = d / "unknown.avi"
    out["unknown_codec"].write_bytes(avi.replace(b"FMP4", b"ZZZZ"))
    return out


def x264_options(keyint: int, bframes: int) -> dict:
    """x264 settings for a keyframe every ``keyint`` frames and up to ``bframes`` B-frames."""
    gop = {"g": str(keyint), "keyint_min": str(keyint), "sc_threshold": "0"}
    return {"crf": "12", "preset": "fast", "bf": str(bframes), **gop}


# Frame times of the fixtures whose frame order, keyframes or header are hard for a reader: name ->
# (frame count, seconds of frame i). "gop12": a keyframe every 12 frames and B-frames (mp4);
# "sparse_keys": one keyframe every 150 frames, B-pyramid (mkv); "vfr_bframes": variable frame
# times with B-frames (mp4); "avi_gaps": frames missing from a 25 fps AVI, whose header counts
# them (it claims more frames than the file holds, as real capture files do).
VFR_MS = [0, *np.cumsum(np.random.default_rng(1).integers(15, 120, 79)).tolist()]
AVI_GAPS = [i + i // 5 * 2 for i in range(60)]  # two frames dropped after every five
REORDERED = {
    "gop12": (120, [i / 24 for i in range(120)]),
    "sparse_keys": (330, [i / 30 for i in range(330)]),
    "vfr_bframes": (80, [t / 1000 for t in VFR_MS]),
    "avi_gaps": (60, [p / 25 for p in AVI_GAPS]),
}


def reordered_videos(d: Path) -> dict[str, Path]:
    """Encode the ``REORDERED`` fixtures into folder ``d``."""
    return {
        "gop12": make_video(d / "gop12.mp4", 120, fps=24, codec_options=x264_options(12, 2)),
        "sparse_keys": make_video(
            d / "sparse.mkv", 330, fps=30, fmt="matroska", codec_options=x264_options(150, 3)
        ),
        "vfr_bframes": make_video(
            d / "vfr_b.mp4", 80, pts_ms=VFR_MS, codec_options=x264_options(10, 2)
        ),
        "avi_gaps": make_video(d / "gaps.avi", 60, fps=25, codec="mpeg4", fmt="avi", pts=AVI_GAPS),
    }
