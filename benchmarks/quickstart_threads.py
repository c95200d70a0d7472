"""The quickstart's compiled training step on 1 and on 2 torch threads, wall time.

    python benchmarks/quickstart_threads.py                 # ~3 minutes on an idle machine

The step of ``call_overhead.py`` (the quickstart recipe: ``video_ttt_linear_small`` with
``motion_input``, B = 8, 10 context frames, 10 fed back with the gradient, AdamW) through
the model's ``compile()``; ``--repeats`` runs per thread count, alternating 1, 2, 1, 2, ...
(the machine's load changes over minutes), each timing ``--steps`` steps after two warm-up
steps (which compile; inductor's cache makes the later runs' warm-up short). Wall time:
the second thread's work shows only there. Prints a Markdown table with the machine's fp32
matmul rate (2048^3, one thread) and the load average. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from call_overhead import training_step  # benchmarks/, this script's folder

from ttt_video.train.peak_flops import measure_peak_flops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=80, help="timed steps per run")
    p.add_argument("--repeats", type=int, default=2, help="runs per thread count")
    p.add_argument("--mixer", default="ttt_linear", choices=("ttt_linear", "ttt_mlp", "attention"))
    args = p.parse_args()
    torch.set_num_threads(1)
    gflops = measure_peak_flops(torch.device("cpu"), torch.float32, 2048) / 1e9
    load = os.getloadavg()[0]
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for threads in rates:
            torch.set_num_threads(threads)
            result = training_step(args.mixer, True, args.steps, clock=time.perf_counter)
            rates[threads].append(result["steps_per_s"])
            print(f"{threads} thread(s): {result['steps_per_s']:.2f} steps/s", flush=True)
    print(
        f"\ntorch {torch.__version__}; fp32 2048^3 matmul on one thread: {gflops:.0f} GFLOP/s; "
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n"
    )
    print("| threads | steps/s, each run | median | x 1 thread |")
    print("|---|---|---|---|")
    base = statistics.median(rates[1])
    for threads, runs in rates.items():
        median = statistics.median(runs)
        cells = ", ".join(f"{r:.2f}" for r in runs)
        print(f"| {threads} | {cells} | {median:.2f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
