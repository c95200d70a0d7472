"""Peak memory and time of a short ``ttt-video quickstart`` and of its SSIM metrics, for this
tree and optionally an earlier one, measured in the same session.

    python benchmarks/quickstart_memory.py                       # 100 steps, 2,000 test sequences
    python benchmarks/quickstart_memory.py --compare-with DIR    # also the package found in DIR
    python benchmarks/quickstart_memory.py --max-steps 20 --test-size 500

Each measurement runs in a fresh process (``PYTHONPATH=DIR`` for the earlier tree), whose peak
resident memory the kernel reports (``ttt_video.io_utils.run_peak_rss``), on one thread:

- ``quickstart``: ``ttt-video quickstart --max_steps N --test_size M``; its ``metrics.json``
  gives the seconds to a trained model and in all (the rest is the test-set evaluation and
  the outputs) and the test metrics, compared between the trees;
- ``ssim`` and ``openstl_ssim``: the metric alone on the ``M`` test sequences' 10 predicted
  frames against the copy-last-frame baseline (the set loaded as float first); its memory is
  the peak over the resident memory before the call (Linux: the kernel's mark, reset through
  ``/proc/self/clear_refs``), the process's peak being mostly torch and the loaded set.

The report (``report.md``, ``metrics.json``) goes to a new folder under ``--out``, which is
printed; it gives the load average and the machine's fp32 matmul rate (2048^3, one thread) at
the start and the end, since wall times depend on both. Needs ``ttt-video prepare mnist``.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from ttt_video.apps.report import load_average, new_run_dir, save_report
from ttt_video.io_utils import run_peak_rss, write_json
from ttt_video.train.peak_flops import measure_peak_flops

CLI = "import sys; from ttt_video.apps.cli import main; sys.exit(main(sys.argv[1:]))"
"""A fresh interpreter running ``ttt-video`` with the arguments that follow."""
METRIC = """import json, sys, time
from pathlib import Path
import numpy as np, torch
from ttt_video.data.synthetic.moving_mnist import fixed_set_path
from ttt_video.train import video_metrics
name, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(1)
test = np.load(fixed_set_path("standard", "test"), mmap_mode="r")[:n]
x = torch.from_numpy(np.array(test)).unsqueeze(2).float().div_(255)
pred, target = x[:, 9:10].expand_as(x[:, 10:]), x[:, 10:]
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))
clear = Path("/proc/self/clear_refs")
clear.exists() and clear.write_text("5")
start, t0 = status("VmRSS:"), time.perf_counter()
value = getattr(video_metrics, name)(pred, target).mean().item()
seconds = time.perf_counter() - t0
extra = status("VmHWM:") - start if clear.exists() else None
json.dump({"seconds": seconds, "value": value, "extra_bytes": extra}, open(out, "w"))
"""
"""A fresh interpreter timing one SSIM function on the first ``n`` test sequences."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--compare-with", type=Path, default=None, help="an earlier source tree")
    p.add_argument("--out", default="runs/quickstart_memory")
    return p.parse_args(argv)


def child(argv: list[str], tree: Path | None, log: Path) -> tuple[int, float]:
    """Run ``argv`` in a fresh process (``tree`` first on ``PYTHONPATH``): (peak RSS in
    bytes, wall seconds); a ``RuntimeError`` naming the log when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    t0 = time.perf_counter()
    with log.open("w") as f:
        code, peak = run_peak_rss(argv, env=env, stdout=f, stderr=f)
    if code:
        raise RuntimeError(f"{argv[3:]} exited with {code}; see {log}")
    return peak, time.perf_counter() - t0


def measure(tree: Path | None, name: str, folder: Path, args: argparse.Namespace) -> dict:
    """The quickstart run and the two SSIM timings of the package in ``tree`` (None: this one)."""
    out = folder / name
    out.mkdir()
    steps, size = str(args.max_steps), str(args.test_size)
    argv = [sys.executable, "-c", CLI, "quickstart", "--out", str(out), "--threads", "1"]
    peak, wall = child(argv + ["--max_steps", steps, "--test_size", size], tree, out / "qs.log")
    result = json.loads(next(out.glob("*/metrics.json")).read_text())
    row = {
        "peak_mb": peak / 1e6,
        "seconds": wall,
        "to_trained_s": result["seconds_to_trained"],
        "evaluation_s": result["seconds_total"] - result["seconds_to_trained"],
        "metrics": result["metrics"],
    }
    print(name, "quickstart", {k: v for k, v in row.items() if k != "metrics"}, flush=True)
    for metric in ("ssim", "openstl_ssim"):
        timing = out / f"{metric}.json"
        argv = [sys.executable, "-c", METRIC, metric, size, str(timing)]
        peak, _ = child(argv, tree, out / f"{metric}.log")
        row[metric] = {"peak_mb": peak / 1e6, **json.loads(timing.read_text())}
        if row[metric]["extra_bytes"] is not None:
            row[metric]["extra_mb"] = row[metric]["extra_bytes"] / 1e6
        print(name, metric, row[metric], flush=True)
    return row


def largest_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two runs' metrics (per method, per metric)."""
    return max(abs(a[m][k] - b[m][k]) for m in a for k in a[m])


def report(rows: dict, info: dict, args: argparse.Namespace) -> str:
    """The Markdown report: one row per tree."""
    lines = [
        f"`ttt-video quickstart --max_steps {args.max_steps} --test_size {args.test_size}` and "
        f"the SSIM metrics on its {args.test_size} test sequences (10 predicted frames each, "
        "against the copy-last-frame baseline), each in a fresh process on one thread, peak "
        f"RSS from the kernel. Machine reference: fp32 matmul (2048^3, one thread) "
        f"{info['gflops_start']:.1f} GFLOP/s at the start, {info['gflops_end']:.1f} at the "
        f"end; load average {info['load_start']} at the start, {info['load_end']} at the end.",
        "",
        "| tree | quickstart peak MB | wall s | to trained s | evaluation s "
        "| ssim s | ssim extra peak MB | openstl_ssim s | openstl_ssim extra peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        cells = [
            f"{r['peak_mb']:.0f}",
            f"{r['seconds']:.0f}",
            f"{r['to_trained_s']:.0f}",
            f"{r['evaluation_s']:.0f}",
            f"{r['ssim']['seconds']:.1f}",
            f"{r['ssim'].get('extra_mb', float('nan')):.0f}",
            f"{r['openstl_ssim']['seconds']:.1f}",
            f"{r['openstl_ssim'].get('extra_mb', float('nan')):.0f}",
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if len(rows) == 2:
        (a, b) = rows.values()
        lines += [
            "",
            "Largest difference between the two runs' test metrics: "
            f"{largest_difference(a['metrics'], b['metrics']):.3g}; SSIM: "
            f"{abs(a['ssim']['value'] - b['ssim']['value']):.3g}, OpenSTL SSIM: "
            f"{abs(a['openstl_ssim']['value'] - b['openstl_ssim']['value']):.3g}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure this tree (and the earlier one), then write and print the report."""
    args = parse_args(argv)
    folder = new_run_dir(args.out, "run")
    torch.set_num_threads(1)
    info = {"load_start": load_average()}
    info["gflops_start"] = measure_peak_flops(torch.device("cpu"), torch.float32, 2048) / 1e9
    trees = {"this tree": None}
    if args.compare_with is not None:
        trees = {f"{args.compare_with} (earlier)": args.compare_with.resolve(), **trees}
    rows = {
        label: measure(tree, f"tree{i}", folder, args)
        for i, (label, tree) in enumerate(trees.items())
    }
    info["gflops_end"] = measure_peak_flops(torch.device("cpu"), torch.float32, 2048) / 1e9
    info["load_end"] = load_average()
    write_json(
        folder / "metrics.json",
        {"rows": rows, **info, "args": vars(args) | {"compare_with": str(args.compare_with)}},
    )
    text = report(rows, info, args)
    return save_report(folder, text)


if __name__ == "__main__":
    raise SystemExit(main())
