"""Long-range recall on held-out digits: TTT-Linear against windowed attention by distance.

For every config, distance and seed, one after another: ``ttt-video fit --config CONFIG
--data.distance D --trainer.max_steps N --trainer.seed S`` (the shipped ``long_range_*``
configs), then top-1/top-5 of its last checkpoint on the test split (held-out digits that
neither training nor validation shows; ``ttt_video.data.synthetic.long_range``)::

    python benchmarks/long_range.py --distances 50 200 --max-steps 300
    python benchmarks/long_range.py --configs long_range_ttt_linear --distances 1000 --seeds 0 1

The runs go to a new folder under ``--out`` with ``report.md`` (also printed) and
``metrics.json``; the report gives the load average and the machine's fp32 matmul GFLOP/s,
measured in the same process, since wall times depend on both. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import time

import lightning as L
import torch

from ttt_video.apps.report import load_average, new_run_dir, save_report
from ttt_video.io_utils import write_json
from ttt_video.train.config import config_path
from ttt_video.train.runner import fit, load_module
from ttt_video.train.tasks import load_run_config

NAMES = {"long_range_ttt_linear": "TTT-Linear", "long_range_attention": "windowed attention"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(NAMES), choices=list(NAMES))
    p.add_argument("--distances", nargs="+", type=int, default=[50, 200])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/long_range")
    return p.parse_args(argv)


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an ``[n, n] @ [n, n]`` matmul on the CPU (the machine's reference)."""
    a = torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def test_metrics(ckpt) -> dict[str, float]:
    """``test/top1``, ``test/top5``, ``test/loss`` of a checkpoint on its run's test split."""
    _, module, datamodule = load_module(ckpt)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False, weights_only=True)
    return {k: float(v) for k, v in metrics.items()}


def run_one(config: str, distance: int, seed: int, args, folder) -> dict:
    """Train one run and evaluate it on the test split: its row of the report."""
    name = f"{config}_d{distance}_s{seed}"
    overrides = {
        "name": name,
        "out_dir": str(folder),
        "data.distance": distance,
        "trainer.max_steps": args.max_steps,
        "trainer.seed": seed,
        "trainer.progress_bar": False,
    }
    run = load_run_config(config_path(config), overrides)
    t0 = time.perf_counter()
    status = fit(run)
    minutes = (time.perf_counter() - t0) / 60
    test = test_metrics(run.run_dir / "checkpoints" / "last.ckpt")
    row = {
        "config": config,
        "distance": distance,
        "seed": seed,
        "steps": status["step"],
        "train_min": round(minutes, 2),
        "load": round(os.getloadavg()[0], 1),
        "val_top1": status.get("val/top1"),
        "test_top1": test["test/top1"],
        "test_top5": test["test/top5"],
        "test_sequences": run.data.eval_length,
    }
    print(row, flush=True)
    return row


def report(rows: list[dict], info: dict) -> str:
    """The Markdown report: one row per run."""
    lines = [
        f"Long-range recall, test split (held-out digits), {info['max_steps']} training steps "
        f"per run, {info['threads']} thread(s). Machine reference: fp32 matmul "
        f"{info['gflops']:.1f} GFLOP/s; load average {info['load_start']} at the start, "
        f"{info['load_end']} at the end (other jobs shared the CPU).",
        "",
        "| model | distance | seed | steps | test top-1 | test top-5 | val top-1 | train min | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {NAMES[r['config']]} | {r['distance']} | {r['seed']} | {r['steps']} | "
            f"{100 * r['test_top1']:.1f}% | {100 * r['test_top5']:.1f}% | "
            f"{100 * r['val_top1']:.1f}% | {r['train_min']:.1f} | {r['load']} |"
        )
    lines += ["", f"Test sequences per run: {rows[0]['test_sequences']} (the same for every run)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every (config, distance, seed), then write and print the report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = new_run_dir(args.out, "held_out")
    load = load_average()
    info = {"max_steps": args.max_steps, "threads": args.threads, "load_start": load}
    info["gflops"] = matmul_gflops()
    rows = []
    for distance in args.distances:
        for config in args.configs:
            for seed in args.seeds:
                rows.append(run_one(config, distance, seed, args, folder))
                write_json(folder / "metrics.json", {"runs": rows, **info})
    info["load_end"] = load_average()
    write_json(folder / "metrics.json", {"runs": rows, **info})
    text = report(rows, info)
    return save_report(folder, text)


if __name__ == "__main__":
    raise SystemExit(main())
