"""Peak resident memory of the video demos against the length of the video.

Writes synthetic files of one kind (moving patterns, H.264, ``ttt_video.data.synthetic.patterns``)
at each length, then runs ``ttt-video demo predict`` (with a short fit on the file:
``--fit_steps``), ``demo classify`` (with a 1-step long-range checkpoint, trained here; needs
``ttt-video prepare mnist``) and ``demo stream`` on every file, each run in a fresh process
whose peak resident memory the kernel reports (``ttt_video.io_utils.run_peak_rss``)::

    python benchmarks/demo_memory.py                         # 1 and 15 minutes, 320x240, 10 fps
    python benchmarks/demo_memory.py --minutes 0.5 3 --width 160 --height 120

Target (issue 12): the longest file's peak within 150 MB of the shortest's, for every demo. The
report (``report.md``, ``metrics.json``) goes to a new folder under ``--out``, which is printed;
it gives the load average and the machine's fp32 matmul rate, since wall times depend on both.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from ttt_video.apps.report import load_average, new_run_dir, save_report
from ttt_video.data.fetch import mnist_path
from ttt_video.data.synthetic.patterns import write_pattern_video
from ttt_video.io_utils import run_peak_rss, write_json
from ttt_video.train.config import config_path
from ttt_video.train.peak_flops import measure_peak_flops
from ttt_video.train.runner import fit
from ttt_video.train.tasks import load_run_config

TARGET_MB = 150.0
"""Most extra peak memory (MB, 10^6 bytes) the longest file may take over the shortest."""
CLI = "import sys; from ttt_video.apps.cli import main; sys.exit(main(sys.argv[1:]))"
"""A fresh interpreter running ``ttt-video`` with the arguments that follow."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", nargs="+", type=float, default=[1.0, 15.0])
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--fit-steps", type=int, default=5)
    p.add_argument("--demos", nargs="+", default=["predict", "classify", "stream"])
    p.add_argument("--out", default="runs/demo_memory")
    return p.parse_args(argv)


def classify_checkpoint(folder: Path) -> Path:
    """The last checkpoint of a 1-step ``long_range_ttt_linear_debug`` run (a classifier)."""
    overrides = {
        "out_dir": str(folder),
        "trainer.max_steps": 1,
        "trainer.progress_bar": False,
        "data.distance": 8,
        "data.eval_length": 8,
    }
    run = load_run_config(config_path("long_range_ttt_linear_debug"), overrides)
    fit(run)
    return run.run_dir / "checkpoints" / "last.ckpt"


def demo_args(demo: str, video: Path, out: Path, ckpt: Path | None, fit_steps: int) -> list[str]:
    """``ttt-video`` arguments of one demo run on ``video`` (CPU, one thread)."""
    args = ["demo", demo, str(video), "--out", str(out), "--device", "cpu", "--threads", "1"]
    if demo == "predict":
        args += ["--fit_steps", str(fit_steps)]
    if demo == "classify":
        args += ["--ckpt", str(ckpt)]
    return args


def measure(demo: str, video: Path, out: Path, ckpt: Path | None, fit_steps: int) -> dict:
    """Run one demo in a fresh process: its peak RSS (MB) and wall time (s)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", CLI, *demo_args(demo, video, out, ckpt, fit_steps)]
    t0 = time.perf_counter()
    with (out / f"{demo}-{video.stem}.log").open("w") as log:
        code, peak = run_peak_rss(argv, env=env, stdout=log, stderr=log)
    if code:
        raise RuntimeError(f"{demo} on {video} exited with {code}; see {log.name} in {out}")
    return {"peak_mb": peak / 1e6, "seconds": time.perf_counter() - t0}


def report(rows: dict, info: dict, args) -> str:
    """The Markdown report: one row per demo, one column pair per file length."""
    short, long = min(args.minutes), max(args.minutes)
    heads = " | ".join(f"{m:g} min: peak MB | s" for m in args.minutes)
    lines = [
        f"Files: moving patterns, {args.width}x{args.height}, {args.fps:g} fps, H.264 "
        f"({', '.join(f'{m:g} min = {round(m * 60 * args.fps)} frames' for m in args.minutes)}). "
        f"Each demo in a fresh process (CPU, one thread), peak RSS from the kernel. "
        f"predict: fit of {args.fit_steps} steps on the file, then every frame. "
        f"Machine reference: fp32 matmul {info['gflops']:.1f} GFLOP/s; load average "
        f"{info['load_start']} at the start, {info['load_end']} at the end.",
        "",
        f"| demo | {heads} | {long:g} min - {short:g} min | target |",
        "|---|" + "---:|---:|" * len(args.minutes) + "---:|---|",
    ]
    for demo, by_length in rows.items():
        cells = " | ".join(
            f"{by_length[m]['peak_mb']:.0f} | {by_length[m]['seconds']:.0f}" for m in args.minutes
        )
        extra = by_length[long]["peak_mb"] - by_length[short]["peak_mb"]
        verdict = "met" if extra <= TARGET_MB else "**not met**"
        lines.append(f"| {demo} | {cells} | {extra:+.0f} MB | <= {TARGET_MB:.0f} MB: {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the files, run every demo on each, then write and print the report."""
    args = parse_args(argv)
    folder = new_run_dir(args.out, "run")
    info = {"load_start": load_average()}
    info["gflops"] = measure_peak_flops(torch.device("cpu"), torch.float32) / 1e9
    demos = list(args.demos)
    ckpt = None
    if "classify" in demos:
        if mnist_path().exists():
            ckpt = classify_checkpoint(folder / "classifier")
        else:
            print("classify skipped: MNIST digits not prepared (ttt-video prepare mnist)")
            demos.remove("classify")
    rows: dict[str, dict[float, dict]] = {demo: {} for demo in demos}
    for minutes in args.minutes:
        video = folder / f"patterns_{minutes:g}min.mp4"
        t0 = time.perf_counter()
        write_pattern_video(video, minutes * 60, args.fps, args.height, args.width)
        print(f"{video.name}: written in {time.perf_counter() - t0:.0f} s", flush=True)
        for demo in demos:
            rows[demo][minutes] = measure(demo, video, folder, ckpt, args.fit_steps)
            print(demo, f"{minutes:g} min", rows[demo][minutes], flush=True)
        video.unlink()
    info["load_end"] = load_average()
    write_json(
        folder / "metrics.json", {"rows": {d: list(r.items()) for d, r in rows.items()}, **info}
    )
    text = report(rows, info, args)
    return save_report(folder, text)


if __name__ == "__main__":
    raise SystemExit(main())
