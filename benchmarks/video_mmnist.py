"""Moving-MNIST-style 10 -> 10: TTT-Linear, TTT-MLP and attention at an equal CPU budget.

Every model is trained with the quickstart's recipe (``ttt_video.apps.quickstart``: same data,
loss, optimiser and schedule) for the same wall-clock budget, one after another on one thread,
then rolled out on the same fixed sequences against the trivial baselines::

    python benchmarks/video_mmnist.py                       # 3 models x 8 min, 2,000 test seqs
    python benchmarks/video_mmnist.py --budget-min 3 --split val --test-size 300 \\
        --models ttt_linear --set model.decoder=conv        # a quick probe of one change

``--set key=value`` (repeatable) overrides a field of the run file (dotted path, YAML value),
as ``ttt-video fit --key value`` does. The report (``report.md``, ``metrics.json``,
``per_frame_mse.png``) goes to a new folder under ``--out``, which is printed.

Letters: N sequences, R = 10 predicted frames. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ttt_video.apps.quickstart import COLUMNS, evaluate_all, prepare_data, quickstart_run
from ttt_video.apps.report import format_table, load_average, new_run_dir, plot_lines, save_report
from ttt_video.data.synthetic.moving_mnist import fixed_set_path
from ttt_video.io_utils import write_json
from ttt_video.train.config import parse_overrides
from ttt_video.train.runner import fit, load_module
from ttt_video.train.tasks import build_run_config

NAMES = {"ttt_linear": "TTT-Linear", "ttt_mlp": "TTT-MLP", "attention": "attention"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(NAMES), choices=list(NAMES))
    p.add_argument("--size", default="small", help="preset size: video_<model>_<size>")
    p.add_argument("--budget-min", type=float, default=8.0, help="training minutes per model")
    p.add_argument("--max-steps", type=int, default=100_000, help="also stop after this many")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--test-size", type=int, default=None, help="first N sequences (default all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/video_mmnist")
    return p.parse_args(argv)


def train_and_evaluate(args: argparse.Namespace, model: str, folder: Path, test: np.ndarray):
    """Train ``model`` under the budget; (metrics per method, curves, steps, seconds, params)."""
    raw = quickstart_run(model, str(folder), args.max_steps, args.seed)
    overrides = {
        "model.preset": f"video_{model}_{args.size}",
        "data.time_budget_s": 60 * args.budget_min,
        "trainer.val_check_interval": args.max_steps,
        **parse_overrides([f"--{item}" for item in args.set]),
    }
    run = build_run_config(raw, model, overrides)
    t0 = time.process_time()
    status = fit(run)
    seconds = time.process_time() - t0
    _, module, _ = load_module(folder / model / "checkpoints" / "last.ckpt")
    metrics, curves, _ = evaluate_all(module, test, label=NAMES[model])
    return metrics, curves, status.get("step"), seconds, module.model.num_parameters()


def report(rows: dict, curves: dict, info: dict, args: argparse.Namespace) -> str:
    """The Markdown report: one row per model and baseline."""
    lines = [
        f"Moving-MNIST-style 10 -> 10, {info['sequences']} {args.split} sequences, "
        f"{args.budget_min} min of training per model, one thread, seed {args.seed}, "
        f"load average at the end {info['load']}.",
        "",
        "| method | params | steps | train CPU s | MSE/frame | MAE/frame | PSNR | SSIM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        extra = info["models"].get(name)
        cells = (
            [f"{extra['params']:,}", str(extra["steps"]), str(extra["cpu_s"])]
            if extra
            else ["-"] * 3
        )
        cells += [f"{m['mse']:.1f}", f"{m['mae']:.1f}", f"{m['psnr']:.2f}", f"{m['ssim']:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "MSE per predicted frame:", ""]
    for name, ys in curves.items():
        lines.append(f"- {name}: " + ", ".join(f"{y:.0f}" for y in ys))
    if args.set:
        lines += ["", "Overrides: " + " ".join(args.set)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every model, then write and print the report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    prepare_data()
    test = np.load(fixed_set_path("standard", args.split), mmap_mode="r")[: args.test_size]
    folder = new_run_dir(args.out, "compare")
    rows, curves, info = {}, {}, {"models": {}, "sequences": len(test)}
    for model in args.models:
        metrics, model_curves, steps, cpu_s, params = train_and_evaluate(args, model, folder, test)
        name = NAMES[model]
        rows[name], curves[name] = metrics[name], model_curves[name]
        info["models"][name] = {"steps": steps, "cpu_s": round(cpu_s), "params": params}
    for baseline in ("zeros", "mean frame", "copy last frame"):  # the same for every model
        rows[baseline], curves[baseline] = metrics[baseline], model_curves[baseline]
    info["load"] = load_average()
    write_json(folder / "metrics.json", {"metrics": rows, "curves": curves, **info})
    plot_lines(
        curves,
        folder / "per_frame_mse.png",
        f"MSE per predicted frame ({args.budget_min} min per model)",
        "predicted frame",
        "MSE per frame",
    )
    text = report(rows, curves, info, args)
    print(format_table(rows, COLUMNS))
    save_report(folder, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
