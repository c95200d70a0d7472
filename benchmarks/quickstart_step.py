"""What a quickstart training step costs inside Lightning against the bare step, in one process.

    python benchmarks/quickstart_step.py                  # 250 Lightning steps, 30 bare ones
    python benchmarks/quickstart_step.py --steps 420 --bare-steps 40

The bare step: the quickstart module's loss on a batch of 8 generated sequences (the
training data's own generator), backward, AdamW; nothing else. The Lightning step: the
quickstart's run (``configs/video/quickstart.yaml``, its trainer from
``ttt_video.train.runner.build_trainer``: progress bar, CSV and TensorBoard logs, validation
and checkpoints every 200 steps, throughput callback) timed by a callback at the end of every
batch. Bare steps run before and after the Lightning run (the machine's load changes); both
are reported as wall and CPU seconds of this process (CPU time is what load does not
stretch), on one thread. The report (``report.md``, ``metrics.json``) goes to a new folder
under ``--out``, with the load average and the fp32 matmul rate (2048^3, one thread).
Needs ``ttt-video prepare mnist``. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import numpy as np
import torch

from ttt_video.apps.quickstart import CONFIG, quickstart_run
from ttt_video.apps.report import load_average, new_run_dir, save_report
from ttt_video.data.synthetic.moving_mnist import MovingMNIST
from ttt_video.io_utils import write_json
from ttt_video.train.config import config_path, resolved_dict
from ttt_video.train.peak_flops import measure_peak_flops
from ttt_video.train.runner import build_trainer
from ttt_video.train.tasks import build_run_config, get_task


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=250, help="Lightning steps")
    p.add_argument("--bare-steps", type=int, default=30, help="bare steps, before and after")
    p.add_argument("--skip", type=int, default=10, help="first Lightning steps left out")
    p.add_argument("--out", default="runs/quickstart_step")
    return p.parse_args(argv)


class Clock(L.Callback):
    """``(CPU, wall)`` seconds of this process at the end of every training batch."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def on_train_batch_end(self, *args) -> None:
        self.marks.append((time.process_time(), time.perf_counter()))


def bare_steps(n: int, folder) -> dict:
    """Mean CPU and wall seconds of ``n`` bare steps of the quickstart's module."""
    run = build_run_config(quickstart_run("bare", str(folder), n, 0), str(config_path(CONFIG)))
    module, _ = get_task(run.task).build(run)
    opt = torch.optim.AdamW(module.parameters(), lr=run.optim.lr)
    data = MovingMNIST("standard", "train", length=10_000, seed=0)
    batch = run.data.batch_size
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        frames = torch.stack([data[i * batch + j]["frames"] for j in range(batch)])
        loss = module.loss(frames)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"cpu_s": (time.process_time() - cpu) / n, "wall_s": (time.perf_counter() - wall) / n}


def lightning_steps(args: argparse.Namespace, folder) -> dict:
    """Per-step CPU and wall seconds of the quickstart's Lightning run (after ``skip`` steps),
    and the steps that took longest (validation, checkpoints)."""
    raw = quickstart_run("lightning", str(folder), args.steps, 0)
    run = build_run_config(raw, str(config_path(CONFIG)))
    module, datamodule = get_task(run.task).build(run)
    trainer = build_trainer(run, run.run_dir, resolved_dict(run))
    clock = Clock()
    trainer.callbacks.append(clock)
    trainer.fit(module, datamodule=datamodule)
    marks = np.array(clock.marks[args.skip :])
    cpu, wall = np.diff(marks[:, 0]), np.diff(marks[:, 1])
    slowest = np.argsort(wall)[-3:][::-1]
    return {
        "cpu_s": float(cpu.mean()),
        "wall_s": float(wall.mean()),
        "median_cpu_s": float(np.median(cpu)),
        "median_wall_s": float(np.median(wall)),
        "slowest": [
            {"step": int(i) + args.skip + 2, "wall_s": float(wall[i]), "cpu_s": float(cpu[i])}
            for i in slowest
        ],
    }


def report(rows: dict, info: dict, args: argparse.Namespace) -> str:
    """The Markdown report: bare steps before, Lightning steps, bare steps after."""
    lines = [
        f"Quickstart training step (batch 8, 10 + 10 frames, `video_ttt_linear_small`), one "
        f"thread, one process. Lightning: steps {args.skip + 1}..{args.steps} of the "
        f"quickstart's trainer. Machine reference: fp32 matmul (2048^3, one thread) "
        f"{info['gflops']:.1f} GFLOP/s; load average {info['load_start']} at the start, "
        f"{info['load_end']} at the end.",
        "",
        "| steps | CPU s/step | wall s/step | steps/s (wall) |",
        "|---|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['cpu_s']:.3f} | {r['wall_s']:.3f} | {1 / r['wall_s']:.2f} |")
    slow = ", ".join(
        f"step {s['step']}: {s['wall_s']:.2f} s wall, {s['cpu_s']:.2f} s CPU"
        for s in rows["Lightning"]["slowest"]
    )
    lines += ["", f"Slowest Lightning steps (validation and checkpoints every 200): {slow}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Bare steps, the Lightning run, bare steps again; write and print the report."""
    args = parse_args(argv)
    folder = new_run_dir(args.out, "run")
    torch.set_num_threads(1)
    info = {"load_start": load_average()}
    info["gflops"] = measure_peak_flops(torch.device("cpu"), torch.float32, 2048) / 1e9
    rows = {"bare, before": bare_steps(args.bare_steps, folder)}
    rows["Lightning"] = lightning_steps(args, folder)
    rows["bare, after"] = bare_steps(args.bare_steps, folder)
    info["load_end"] = load_average()
    write_json(folder / "metrics.json", {"rows": rows, **info, "args": vars(args)})
    text = report(rows, info, args)
    return save_report(folder, text)


if __name__ == "__main__":
    raise SystemExit(main())
