"""Video reader benchmark: decode throughput against plain PyAV, random clips per backend, memory.

    python benchmarks/video_io.py [--out benchmarks/video_io.md]

Uses cockatoo.mp4 from the cache when data_prep/fetch_clips.py has run, and files it generates
in a temporary folder. Writes a markdown report with the command that made it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import av
import numpy as np
import torch

from ttt_video.data.fetch import clip_path
from ttt_video.data.video.backends import decord_available
from ttt_video.data.video.reader import ClipSpec, VideoReader, read_video, stream_video, write_video
from ttt_video.io_utils import rss_bytes


def best_of(fn, repeats: int = 3) -> float:
    """Fastest wall time of ``repeats`` calls, seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def plain_pyav(path: Path) -> int:
    """The baseline: decode every frame to RGB numpy with PyAV, same threading as the reader."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for f in container.decode(stream) if f.to_ndarray(format="rgb24") is not None)


def plain_pyav_kept(path: Path) -> np.ndarray:
    """The baseline that returns what the reader returns: every RGB frame, stacked."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def throughput_rows(path: Path) -> list[str]:
    """Frames/s of the plain loop, ``read_video`` and ``stream_video`` on one file."""
    n = plain_pyav(path)
    base = best_of(lambda: plain_pyav(path))
    kept = best_of(lambda: plain_pyav_kept(path))
    read = best_of(lambda: read_video(path, backend="av"))
    stream = best_of(lambda: sum(c.shape[0] for c in stream_video(path, chunk_size=32)))
    info = VideoReader(path, backend="av").info
    name = f"{path.name} ({info.width}x{info.height}, {n} frames)"
    return [
        f"| {name} | plain PyAV loop, frames dropped | {n / base:.0f} | baseline |",
        f"| {name} | plain PyAV loop, frames stacked | {n / kept:.0f} | {100 * (kept / base - 1):+.1f}% |",
        f"| {name} | `read_video(backend='av')` | {n / read:.0f} | {100 * (read / base - 1):+.1f}% "
        f"({100 * (read / kept - 1):+.1f}% vs stacked) |",
        f"| {name} | `stream_video(chunk_size=32)` | {n / stream:.0f} | {100 * (stream / base - 1):+.1f}% |",
    ]


def random_clip_rows(path: Path, clips: int = 6) -> list[str]:
    """Clips/s for random 16-frame clips (stride 2), opening the file per clip as a dataset does."""
    rows = []
    backends = ["av"] + (["decord", "auto"] if decord_available() else [])
    spec = ClipSpec(num_frames=16, stride=2, random=True)
    for backend in backends:
        rng = np.random.default_rng(0)
        seconds = best_of(
            lambda b=backend, r=rng: [VideoReader(path, b).read(spec, rng=r) for _ in range(clips)],
            2,
        )
        rows.append(
            f"| {path.name} | {backend} | {clips / seconds:.1f} | {16 * clips / seconds:.0f} |"
        )
    return rows


def streaming_memory(tmp: Path, frames: int = 1500) -> list[str]:
    """Peak traced and resident memory while streaming a long 320x240 file in chunks of 32."""
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.integers(0, 255, (30, 3, 240, 320), dtype=np.uint8))
    video = base.repeat(frames // 30, 1, 1, 1)
    path = write_video(tmp / "long.mp4", video, fps=30, crf=30)
    del video
    full_mb = frames * 240 * 320 * 3 / 1e6
    tracemalloc.start()
    rss0 = _rss_mb()
    count = sum(c.shape[0] for c in stream_video(path, chunk_size=32))
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return [
        f"| {count} frames 320x240 ({full_mb:.0f} MB decoded) | {peak:.1f} MB | "
        f"{_rss_mb() - rss0:+.1f} MB |"
    ]


def _rss_mb() -> float:
    """Current resident set size of this process in MB (Linux)."""
    return rss_bytes() / 1e6


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements and write the report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".md"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(1)
        noise = torch.from_numpy(rng.integers(0, 255, (60, 3, 360, 640), dtype=np.uint8))
        generated = write_video(tmp / "gen_640x360.mp4", noise.repeat(5, 1, 1, 1), fps=30, crf=28)
        files = [f for f in (clip_path("cockatoo.mp4"), generated) if f is not None]
        lines = [
            "# Video reader benchmark",
            "",
            f"Command: `python benchmarks/video_io.py` ({datetime.date.today()}, "
            f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, PyAV {av.__version__}, "
            f"decord {'installed' if decord_available() else 'absent'}).",
            "",
            "## Decode throughput (best of 3, every frame to RGB uint8)",
            "",
            "| file | reader | frames/s | time vs plain |",
            "|---|---|---|---|",
        ]
        for f in files:
            lines += throughput_rows(f)
        lines += ["", "## Random 16-frame clips, stride 2 (file opened per clip, 6 clips)", ""]
        lines += ["| file | backend | clips/s | frames/s |", "|---|---|---|---|"]
        for f in files:
            lines += random_clip_rows(f)
        lines += ["", "## Streaming a long file in chunks of 32", ""]
        lines += ["| file | peak traced (numpy) | resident growth |", "|---|---|---|"]
        lines += streaming_memory(tmp)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
