"""Long-range recall on held-out digits: TTT-Linear, LaCT, full attention and attention shown only
the last 32 frames, by distance, at an equal CPU budget.

For every distance, the first ``--variants`` entry (TTT-Linear by default) trains for
``--max-steps`` steps; every other variant then trains for the same wall time (its
``data.time_budget_s``, the schedule running on elapsed time) unless ``--budget-min`` gives
every run one budget. Each run is ``ttt-video fit --config long_range_* --data.distance D
--trainer.seed S`` with the variant's overrides, in a child process of its own (its peak
resident memory is the run's), then top-1/top-5 of its last checkpoint on the test split
(held-out digits that neither training nor validation shows;
``ttt_video.data.synthetic.long_range``)::

    python benchmarks/long_range.py --distances 50 200 --max-steps 300
    python benchmarks/long_range.py --variants lact --distances 1000 --budget-min 17

The runs go to a new folder under ``--out`` with ``report.md`` (also printed) and
``metrics.json``; the report gives the load average and the machine's fp32 matmul GFLOP/s,
measured in the same process, since wall times depend on both. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import lightning as L
import torch

from ttt_video.apps.report import load_average, new_run_dir, save_report
from ttt_video.io_utils import write_json
from ttt_video.train.config import config_path
from ttt_video.train.peak_flops import measure_peak_flops
from ttt_video.train.runner import fit, load_module
from ttt_video.train.tasks import load_run_config

VARIANTS = {  # name: (shipped config, overrides, label in the report)
    "ttt_linear": ("long_range_ttt_linear", {}, "TTT-Linear"),
    "attention_full": (
        "long_range_attention",
        {"model.objective.window_frames": None},
        "full causal attention",
    ),
    "attention_cropped": (
        "long_range_attention",
        {},
        "attention on the last 32 frames (input cropped)",
    ),
    "lact": ("long_range_lact", {}, "LaCT (64-frame chunks and window)"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--distances", nargs="+", type=int, default=[50, 200])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--max-steps", type=int, default=300, help="steps of the first variant")
    p.add_argument("--budget-min", type=float, default=None, help="one budget for every run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/long_range")
    return p.parse_args(argv)


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


def run_one(variant: str, distance: int, seed: int, budget_s: float | None, args, folder) -> dict:
    """Train one run (``args.max_steps`` steps, or ``budget_s`` seconds of wall time) and evaluate
    it on the test split: its row of the report. Meant for a child process of its own, whose
    peak resident memory (``peak_rss_mb``) is then this run's."""
    torch.set_num_threads(args.threads)
    config, extra, _ = VARIANTS[variant]
    overrides = {
        "name": f"{variant}_d{distance}_s{seed}",
        "out_dir": str(folder),
        "data.distance": distance,
        "trainer.max_steps": args.max_steps if budget_s is None else 100_000,
        "trainer.seed": seed,
        "trainer.progress_bar": False,
        **extra,
    }
    if budget_s is not None:
        overrides["data.time_budget_s"] = budget_s
    run = load_run_config(config_path(config), overrides)
    t0 = time.perf_counter()
    status = fit(run)
    seconds = time.perf_counter() - t0
    test = test_metrics(run.run_dir / "checkpoints" / "last.ckpt")
    row = {
        "variant": variant,
        "distance": distance,
        "seed": seed,
        "steps": status["step"],
        "train_s": round(seconds, 1),
        "s_per_step": round(seconds / max(status["step"], 1), 3),
        "budget_s": budget_s,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load": round(os.getloadavg()[0], 1),
        "val_top1": status.get("val/top1"),
        "test_top1": test["test/top1"],
        "test_top5": test["test/top5"],
        "test_sequences": run.data.eval_length,
    }
    print(row, flush=True)
    return row


def run_in_child(*args) -> dict:
    """``run_one`` in a fresh process (spawned, so that its peak memory is its own)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(run_one, *args).result()


def report(rows: list[dict], info: dict) -> str:
    """The Markdown report: one row per run."""
    budget = (
        f"{info['budget_min']:.1f} min of training per run"
        if info["budget_min"]
        else f"the first variant {info['max_steps']} steps, the others its wall time"
    )
    lines = [
        f"Long-range recall, test split (held-out digits), {budget}, {info['threads']} "
        f"thread(s) per run. Machine reference: fp32 matmul {info['gflops']:.1f} GFLOP/s; load "
        f"average {info['load_start']} at the start, {info['load_end']} at the end.",
        "",
        "| model | distance | seed | steps | s/step | peak RSS MB | test top-1 | test top-5 "
        "| val top-1 | train min | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {VARIANTS[r['variant']][2]} | {r['distance']} | {r['seed']} | {r['steps']} | "
            f"{r['s_per_step']:.2f} | {r['peak_rss_mb']:,} | {100 * r['test_top1']:.1f}% | "
            f"{100 * r['test_top5']:.1f}% | {100 * r['val_top1']:.1f}% | "
            f"{r['train_s'] / 60:.1f} | {r['load']} |"
        )
    lines += [
        "",
        f"Test sequences per run: {rows[0]['test_sequences']} (the same for every run). "
        "s/step is the training wall time (validation included) over the steps.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every (distance, variant, seed), then write and print the report."""
    args = parse_args(argv)
    folder = new_run_dir(args.out, "held_out")
    info = {
        "max_steps": args.max_steps,
        "budget_min": args.budget_min,
        "threads": args.threads,
        "load_start": load_average(),
        "gflops": measure_peak_flops(torch.device("cpu"), torch.float32) / 1e9,
    }
    fixed = None if args.budget_min is None else 60 * args.budget_min
    rows = []
    for distance in args.distances:
        for seed in args.seeds:
            budget = fixed
            for variant in args.variants:
                rows.append(run_in_child(variant, distance, seed, budget, args, folder))
                budget = budget or rows[-1]["train_s"]
                write_json(folder / "metrics.json", {"runs": rows, **info})
    info["load_end"] = load_average()
    write_json(folder / "metrics.json", {"runs": rows, **info})
    return save_report(folder, report(rows, info))


if __name__ == "__main__":
    raise SystemExit(main())
