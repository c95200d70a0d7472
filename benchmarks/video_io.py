"""Video reader benchmark: decode at the model's size, backends, training loaders, memory.

    python benchmarks/video_io.py [--out benchmarks/video_io.md] [--frames 80] [--clips 24]

One run measures, on the same files:

1. decode + resize of cockatoo.mp4 (1280x720) to 64x64 and 224x224 on one core (the process
   pinned to one CPU, one torch thread): the reader's previous path (kept below as
   ``previous_path``: every frame converted to RGB at full size, stacked, resized by torch's
   antialiased bilinear interpolation) against the reader now (FFmpeg scales during the RGB
   conversion), with the pixel difference between the two; and each swscale filter's
   difference, to show which one matches torch's resize;
2. random 16-frame clips per backend (PyAV, decord, torchcodec, where installed), file opened
   per clip as a dataset does, at 64x64, 224x224 and the native size;
3. clips/s of the folder dataset of the four real clips with 0, 1 and 2 DataLoader workers;
4. decode throughput of every frame at the native size, and streaming memory.

Needs the real clips (``ttt-video prepare clips``). Prints the load average and the fp32 matmul
rate measured in the same run, since the machine may be shared.
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
import torch.nn.functional as nnf
from torch.utils.data import DataLoader

from ttt_video.apps.measure import best_of
from ttt_video.apps.report import load_average
from ttt_video.data.fetch import CLIPS, clip_path
from ttt_video.data.video.backends import decord_available, torchcodec_available
from ttt_video.data.video.folder import VideoClipDataset, collate_clips
from ttt_video.data.video.frames import FrameFormat, scaled_size
from ttt_video.data.video.manifest import VideoItem
from ttt_video.data.video.reader import (
    ClipSpec,
    VideoReader,
    read_video,
    stream_video,
    write_video,
)
from ttt_video.io_utils import rss_bytes
from ttt_video.train.peak_flops import measure_peak_flops

SIZES = (64, 224)
INTERPOLATIONS = ("FAST_BILINEAR", "BILINEAR", "BICUBIC", "AREA", "GAUSS", "X", "LANCZOS")


def previous_path(path: Path, frames: int, size: int) -> torch.Tensor:
    """The reader's path before decoding at the target size: RGB at full size, stacked, then
    torch's antialiased bilinear resize and a centre crop -> uint8 ``[F, 3, size, size]``."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rgb = []
        for frame in container.decode(stream):
            rgb.append(frame.to_ndarray(format="rgb24"))
            if len(rgb) == frames:
                break
    x = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    scale = max(size / h, size / w)
    sh, sw = max(round(h * scale), size), max(round(w * scale), size)
    x = nnf.interpolate(x.float(), size=(sh, sw), mode="bilinear", antialias=True)
    x = x.round_().clamp_(0, 255).to(torch.uint8)
    top, left = (sh - size) // 2, (sw - size) // 2
    return x[..., top : top + size, left : left + size].contiguous()


def diff_stats(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(max, mean) absolute difference of two uint8 tensors."""
    d = (a.int() - b.int()).abs().float()
    return d.max().item(), d.mean().item()


def on_one_core(fn):
    """Run ``fn()`` pinned to one CPU with one torch thread; restore both after."""
    cpus, threads = os.sched_getaffinity(0), torch.get_num_threads()
    os.sched_setaffinity(0, {min(cpus)})
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        os.sched_setaffinity(0, cpus)
        torch.set_num_threads(threads)


def resize_rows(path: Path, frames: int) -> list[str]:
    """Frames/s of decode+resize, previous path against the reader now, one core."""
    rows = []
    spec = ClipSpec(end_frame=frames)
    for size in SIZES:
        fmt = FrameFormat(size=size)
        old = previous_path(path, frames, size)
        new = read_video(path, spec, fmt, backend="av").frames
        t_old = best_of(lambda s=size: previous_path(path, frames, s), 2)
        t_new = best_of(lambda f=fmt: read_video(path, spec, f, backend="av"), 2)
        mx, mean = diff_stats(old, new)
        rows.append(
            f"| {size}x{size} | {frames / t_old:.1f} | {frames / t_new:.1f} | "
            f"{t_old / t_new:.1f}x | {mx:.0f} | {mean:.3f} |"
        )
    return rows


def scaled(frames: list[av.VideoFrame], size: tuple[int, int], interpolation: str) -> list:
    """Each frame converted to RGB ``[H, W, 3]`` at ``size = (H, W)`` by swscale's filter."""
    h, w = size
    return [
        f.reformat(width=w, height=h, format="rgb24", interpolation=interpolation).to_ndarray()
        for f in frames
    ]


def interpolation_rows(path: Path, frames: int = 12) -> list[str]:
    """Each swscale filter against torch's antialiased bilinear resize (crop to 64 and 224)."""
    with av.open(str(path)) as container:
        decoded = [f for f, _ in zip(container.decode(video=0), range(frames))]
    rows = []
    for size in SIZES:
        fmt = FrameFormat(size=size)
        sh, sw = scaled_size(decoded[0].height, decoded[0].width, fmt)
        full = torch.from_numpy(np.stack([f.to_ndarray(format="rgb24") for f in decoded]))
        ref = nnf.interpolate(
            full.permute(0, 3, 1, 2).float(), size=(sh, sw), mode="bilinear", antialias=True
        )
        ref = ref.round_().clamp_(0, 255).to(torch.uint8)
        for name in INTERPOLATIONS:
            out = torch.from_numpy(np.stack(scaled(decoded, (sh, sw), name))).permute(0, 3, 1, 2)
            mx, mean = diff_stats(out, ref)
            seconds = on_one_core(
                lambda n=name, s=(sh, sw): best_of(lambda: scaled(decoded, s, n), 2)
            )
            rows.append(f"| {size} | {name} | {mx:.0f} | {mean:.3f} | {frames / seconds:.0f} |")
    return rows


def backends() -> list[str]:
    return (
        ["av"]
        + (["decord"] if decord_available() else [])
        + (["torchcodec"] if torchcodec_available() else [])
    )


def backend_rows(path: Path, clips: int) -> list[str]:
    """Clips/s of random 16-frame clips (stride 2) per backend and size, file opened per clip
    (its frame index cached, as in a dataset worker)."""
    rows = []
    spec = ClipSpec(num_frames=16, stride=2, random=True)
    VideoReader(path, backend="av")  # builds the cached frame index outside the timing
    for size in (*SIZES, None):
        fmt = FrameFormat(size=size)
        for backend in backends():

            def run(b=backend, f=fmt):
                rng = np.random.default_rng(0)
                for _ in range(clips):
                    VideoReader(path, b).read(spec, f, rng=rng)

            seconds = best_of(run, 2)
            label = f"{size}x{size}" if size else "native"
            rows.append(f"| {path.name} | {label} | {backend} | {clips / seconds:.1f} |")
    return rows


def loader_rows(clips: int) -> list[str]:
    """Clips/s of the folder dataset of the real clips through a DataLoader (batch 4)."""
    paths = [clip_path(name) for name in CLIPS]
    items = [VideoItem(str(p)) for p in paths if p is not None] * max(1, clips // len(CLIPS))
    spec = ClipSpec(num_frames=16, random=True)
    rows = []
    for size in SIZES:
        for workers in (0, 1, 2):
            dataset = VideoClipDataset(items, spec, FrameFormat(size=size), labelled=False)
            loader = DataLoader(
                dataset, batch_size=4, num_workers=workers, collate_fn=collate_clips
            )
            batches = iter(loader)
            first = next(batches)["frames"].shape[0]  # worker start-up stays out of the timing
            start = time.perf_counter()
            count = sum(b["frames"].shape[0] for b in batches)
            seconds = time.perf_counter() - start
            rows.append(f"| {size}x{size} | {workers} | {count / seconds:.1f} | {first + count} |")
    return rows


def throughput_rows(path: Path) -> list[str]:
    """Frames/s of every frame at the native size: a plain PyAV loop, ``read_video``,
    ``stream_video`` (threads as torch and FFmpeg choose)."""

    def plain() -> int:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            return len(np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)]))

    n = plain()
    base = best_of(plain)
    read = best_of(lambda: read_video(path, backend="av"))
    stream = best_of(lambda: sum(c.shape[0] for c in stream_video(path, chunk_size=32)))
    return [
        f"| {path.name} | plain PyAV loop, frames stacked | {n / base:.0f} |",
        f"| {path.name} | `read_video(backend='av')` | {n / read:.0f} |",
        f"| {path.name} | `stream_video(chunk_size=32)` | {n / stream:.0f} |",
    ]


def streaming_memory(tmp: Path, frames: int = 1500) -> list[str]:
    """Peak traced and resident memory while streaming a long 320x240 file in chunks of 32."""
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.integers(0, 255, (30, 3, 240, 320), dtype=np.uint8))
    path = write_video(tmp / "long.mp4", base.repeat(frames // 30, 1, 1, 1), fps=30, crf=30)
    full_mb = frames * 240 * 320 * 3 / 1e6
    tracemalloc.start()
    rss0 = rss_bytes()
    count = sum(c.shape[0] for c in stream_video(path, chunk_size=32))
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return [
        f"| {count} frames 320x240 ({full_mb:.0f} MB decoded) | {peak:.1f} MB | "
        f"{(rss_bytes() - rss0) / 1e6:+.1f} MB |"
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and write the report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".md"))
    p.add_argument("--frames", type=int, default=80, help="frames decoded per resize timing")
    p.add_argument("--clips", type=int, default=24, help="clips per backend / loader timing")
    args = p.parse_args(argv)
    cockatoo = clip_path("cockatoo.mp4")
    if cockatoo is None:
        raise SystemExit("cockatoo.mp4 is not in the cache: run ttt-video prepare clips")
    start_load = load_average()
    gflops = measure_peak_flops(torch.device("cpu"), torch.float32) / 1e9
    lines = [
        "# Video reader benchmark",
        "",
        f"Command: `python benchmarks/video_io.py` ({datetime.date.today()}, "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, torch "
        f"{torch.__version__}, PyAV {av.__version__}, backends: {', '.join(backends())}).",
        f"Machine reference: fp32 1024^2 matmul {gflops:.1f} GFLOP/s; load average (1, 5, 15 min) "
        f"{start_load} at the start.",
        "",
        f"## Decode + resize of cockatoo.mp4 (1280x720, first {args.frames} frames), one core",
        "",
        "Previous path: RGB at full size, stacked, torch antialiased bilinear resize, crop. Now: "
        "FFmpeg scales during the RGB conversion, only small frames are stacked. Difference: "
        "pixels of the two paths (uint8).",
        "",
        "| size | previous frames/s | now frames/s | speed-up | max diff | mean diff |",
        "|---|---|---|---|---|---|",
    ]
    lines += on_one_core(lambda: resize_rows(cockatoo, args.frames))
    lines += [
        "",
        "## swscale filters against torch's antialiased bilinear resize (12 frames, one core)",
        "",
        "| size | interpolation | max diff | mean diff | conversions/s |",
        "|---|---|---|---|---|",
    ]
    lines += interpolation_rows(cockatoo)
    lines += [
        "",
        f"## Random 16-frame clips (stride 2) per backend, file opened per clip, {args.clips} clips",
        "",
        "| file | size | backend | clips/s |",
        "|---|---|---|---|",
    ]
    lines += backend_rows(cockatoo, args.clips)
    lines += [
        "",
        f"## Folder dataset of the four real clips, 16-frame clips, batch 4, {args.clips} clips",
        "",
        "Clips/s after the first batch (worker start-up excluded), backend `auto`.",
        "",
        "| size | DataLoader workers | clips/s | clips |",
        "|---|---|---|---|",
    ]
    lines += loader_rows(args.clips)
    lines += ["", "## Every frame at the native size", ""]
    lines += ["| file | reader | frames/s |", "|---|---|---|"]
    lines += throughput_rows(cockatoo)
    with tempfile.TemporaryDirectory() as tmp:
        lines += ["", "## Streaming a long file in chunks of 32", ""]
        lines += ["| file | peak traced (numpy) | resident growth |", "|---|---|---|"]
        lines += streaming_memory(Path(tmp))
    lines += ["", f"Load average at the end: {load_average()}."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
