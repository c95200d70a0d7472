"""Moving-MNIST-style prediction: TTT-Linear, TTT-MLP, LaCT, full and window attention at an
equal CPU budget.

Every model is trained with the quickstart's recipe (``ttt_video.apps.quickstart``: same data,
loss, optimiser and schedule) for the same wall-clock budget, one after another on one thread,
then rolled out on the same fixed sequences against the trivial baselines::

    python benchmarks/video_mmnist.py                       # 10 -> 10, 3 models x 8 min
    python benchmarks/video_mmnist.py --budget-min 3 --split val --test-size 300 \\
        --models ttt_linear --set model.decoder=conv        # a quick probe of one change
    python benchmarks/video_mmnist.py --variant long200 --batch-size 2 \\
        --set model.objective.rollout_training=false       # 200-frame clips, teacher-forced

``--variant long200`` trains on 200-frame clips and rolls out 100 frames after 100 (the
``long200`` fixed sets); ``context40`` and ``context90`` roll out 10 frames after 40 or 90
(``--set model.objective.context_weight=0.7`` or ``0.3`` keeps the rolled-out frames' share of
the loss at the quickstart's 27%). ``attention_window`` is the attention backbone restricted
to the last ``--window-frames`` frames (``attention_window`` in tokens: frames x tokens per
frame).

``--set key=value`` (repeatable) overrides a field of the run file (dotted path, YAML value),
as ``ttt-video fit --key value`` does. The report (``report.md``, ``metrics.json``,
``per_frame_mse.png``) goes to a new folder under ``--out``, which is printed.

Letters: N sequences, R = 10 predicted frames. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ttt_video.apps.quickstart import COLUMNS, evaluate_all, prepare_data, quickstart_run
from ttt_video.apps.report import format_table, load_average, new_run_dir, plot_lines, save_report
from ttt_video.data.synthetic.moving_mnist import VARIANTS, fixed_set_path
from ttt_video.io_utils import write_json
from ttt_video.models import config_from_name
from ttt_video.train.config import parse_overrides
from ttt_video.train.runner import fit, load_module
from ttt_video.train.tasks import build_run_config

NAMES = {
    "ttt_linear": "TTT-Linear",
    "ttt_mlp": "TTT-MLP",
    "attention": "attention",
    "attention_window": "window attention",
    "lact": "LaCT",
}
DEFAULT_MODELS = ("ttt_linear", "ttt_mlp", "attention")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=list(NAMES))
    p.add_argument("--size", default="small", help="preset size: video_<model>_<size>")
    p.add_argument("--variant", default="standard", choices=list(VARIANTS))
    p.add_argument("--batch-size", type=int, default=None, help="clips per step (recipe's: 8)")
    p.add_argument("--window-frames", type=int, default=8, help="attention_window's frames")
    p.add_argument("--budget-min", type=float, default=8.0, help="training minutes per model")
    p.add_argument("--max-steps", type=int, default=100_000, help="also stop after this many")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--test-size", type=int, default=None, help="first N sequences (default all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/video_mmnist")
    p.add_argument(
        "--combine",
        nargs="+",
        metavar="RUN",
        help="no training: merge the reports of earlier runs (their folders) into one",
    )
    return p.parse_args(argv)


def train_and_evaluate(args: argparse.Namespace, model: str, folder: Path, test: np.ndarray):
    """Train ``model`` under the budget; (metrics per method, curves, steps, seconds, params)."""
    raw = quickstart_run(model, str(folder), args.max_steps, args.seed)
    mixer = "attention" if model == "attention_window" else model
    overrides = {
        "model.preset": f"video_{mixer}_{args.size}",
        "data.time_budget_s": 60 * args.budget_min,
        "trainer.val_check_interval": args.max_steps,
    }
    variant = VARIANTS[args.variant]
    overrides.update({"data.variant": args.variant, "data.num_input": variant.num_input})
    overrides["data.num_output"] = variant.num_output
    if args.batch_size:
        overrides["data.batch_size"] = args.batch_size
    overrides.update(parse_overrides([f"--{item}" for item in args.set]))
    if model == "attention_window":  # in tokens: frames x tokens per frame (after --set)
        geometry = {
            field: overrides[f"model.{field}"]
            for field in ("image_size", "patch_size")
            if f"model.{field}" in overrides
        }
        tokens = config_from_name(f"video_attention_{args.size}", **geometry).tokens_per_frame
        overrides.setdefault("model.attention_window", args.window_frames * tokens)
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
        f"Moving-MNIST-style {info['protocol']}, {info['sequences']} {args.split} sequences, "
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


def train_all(args: argparse.Namespace, folder: Path) -> tuple[dict, dict, dict]:
    """Train and evaluate every model, in ``folder``: (metrics, curves, info) by method."""
    torch.set_num_threads(args.threads)
    prepare_data(args.variant)  # builds the variant's val and test sets when missing
    path = fixed_set_path(args.variant, args.split)
    test = np.load(path, mmap_mode="r")[: args.test_size]
    variant = VARIANTS[args.variant]
    protocol = f"{variant.num_input} -> {variant.num_output}"
    rows, curves, info = {}, {}, {"models": {}, "sequences": len(test), "protocol": protocol}
    for model in args.models:
        metrics, model_curves, steps, cpu_s, params = train_and_evaluate(args, model, folder, test)
        name = NAMES[model]
        rows[name], curves[name] = metrics[name], model_curves[name]
        info["models"][name] = {"steps": steps, "cpu_s": round(cpu_s), "params": params}
    for baseline in ("zeros", "mean frame", "copy last frame"):  # the same for every model
        rows[baseline], curves[baseline] = metrics[baseline], model_curves[baseline]
    info["load"] = load_average()
    return rows, curves, info


def combine(runs: list[str]) -> tuple[dict, dict, dict]:
    """The (metrics, curves, info) of earlier runs' ``metrics.json`` merged: models from every
    run, baselines from the first (``ValueError`` when the runs scored other sequences)."""
    reports = [json.loads((Path(run) / "metrics.json").read_text()) for run in runs]
    first = reports[0]
    for run, other in zip(runs, reports):
        if (other["sequences"], other["protocol"]) != (first["sequences"], first["protocol"]):
            raise ValueError(f"{run}: scored other sequences than {runs[0]}")
    rows, curves = {}, {}
    info = {"models": {}, "sequences": first["sequences"], "protocol": first["protocol"]}
    for other in reports:
        for name in other["models"]:
            rows[name], curves[name] = other["metrics"][name], other["curves"][name]
            info["models"][name] = other["models"][name]
    for name in first["metrics"]:
        if name not in first["models"]:  # a baseline
            rows[name], curves[name] = first["metrics"][name], first["curves"][name]
    info["load"] = ", ".join(other["load"] for other in reports)
    return rows, curves, info


def main(argv: list[str] | None = None) -> int:
    """Run every model, then write and print the report."""
    args = parse_args(argv)
    folder = new_run_dir(args.out, "compare")
    if args.combine:
        rows, curves, info = combine(args.combine)
    else:
        rows, curves, info = train_all(args, folder)
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
