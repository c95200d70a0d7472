"""``ttt-video quickstart``: prepare data, train a small TTT-Linear frame predictor on the CPU,
evaluate it against trivial baselines, and write a run folder.

Letters: ``N`` test sequences, ``F0 = 10`` context frames, ``R = 10`` predicted frames,
``S = 64`` frame side.

Steps: (1) the Moving-MNIST-style data from real MNIST digits (``data_prep/moving_mnist.py``'s
functions; idempotent); (2) ``video_predict`` with the ``video_ttt_linear_small`` preset through
the shared runner; (3) the fixed test set: the model rolls out ``R`` frames after ``F0``,
feeding its predictions back, against three baselines (all zeros, the mean training frame,
the last context frame repeated); (4) the run folder: ``comparison.mp4/.gif`` (ground truth |
prediction), ``training.png``, ``per_frame_mse.png``, ``metrics.json``, ``summary.txt``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ttt_video.apps.report import (
    comparison_video,
    format_table,
    new_run_dir,
    plot_lines,
    plot_training,
    read_metrics_csv,
    write_comparison,
    write_json,
)
from ttt_video.data.fetch import fetch_mnist_digits
from ttt_video.data.synthetic.moving_mnist import MovingMNIST, build_fixed_set, fixed_set_path
from ttt_video.train.runner import fit, load_module
from ttt_video.train.tasks import build_run_config
from ttt_video.train.video_metrics import frame_metrics, mse_per_frame
from ttt_video.train.video_module import VideoPredictModule

STEPS = 1800
COLUMNS = ["mse", "mae", "psnr", "ssim"]
OURS = "TTT-Linear (ours)"


def quickstart_run(
    name: str,
    out_dir: str,
    max_steps: int,
    seed: int,
    preset: str = "video_ttt_linear_small",
    time_budget_s: float = 1500.0,
) -> dict:
    """The quickstart's run file as a mapping (what ``config.yaml`` in the run folder holds).

    ``preset`` and ``time_budget_s`` let ``benchmarks/video_mmnist.py`` train the other
    backbones with the same recipe.
    """
    return {
        "task": "video_predict",
        "name": name,
        "out_dir": out_dir,
        "model": {"preset": preset, "motion_input": True},
        "data": {
            "source": "moving_mnist",
            "variant": "standard",
            "batch_size": 8,
            "rollout_training": True,
            "feedback_grad": True,
            "context_weight": 3.0,
            "time_budget_s": time_budget_s,
        },
        "optim": {"lr": 3.0e-3, "weight_decay": 0.0, "warmup_fraction": 0.02},
        "trainer": {
            "accelerator": "cpu",
            "max_steps": max_steps,
            "val_check_interval": max_steps,
            "limit_val_batches": 4,
            "log_every": 10,
            "seed": seed,
        },
    }


def prepare_data() -> Path:
    """Fetch the digits and build the standard val/test sets if missing; the test set's path."""
    digits = fetch_mnist_digits()
    print(f"digits: {digits}")
    for split in ("val", "test"):
        path = build_fixed_set("standard", split, progress=lambda r, s=split: tqdm(r, desc=s))
        print(f"{split} set: {path}")
    return fixed_set_path("standard", "test")


def mean_training_frame(n: int = 200) -> torch.Tensor:
    """The per-pixel mean of ``n`` generated training sequences: ``[1, S, S]`` in [0, 1]."""
    data = MovingMNIST("standard", "train", length=n, seed=123)
    total = sum(torch.cat(data[i]).float().mean(0) for i in range(n))
    return total / n / 255


@torch.no_grad()
def rollout_test(module: VideoPredictModule, test: np.ndarray, batch: int = 100) -> torch.Tensor:
    """Rolled-out predictions ``[N, R, 1, S, S]`` for test sequences uint8 ``[N, F, S, S]``."""
    preds = []
    for i in tqdm(range(0, len(test), batch), desc="test rollout"):
        frames = torch.from_numpy(np.array(test[i : i + batch])).unsqueeze(2)
        preds.append(module.evaluate(frames)[0])
    return torch.cat(preds)


def evaluate_all(
    module: VideoPredictModule, test: np.ndarray, label: str = OURS
) -> tuple[dict, dict, torch.Tensor]:
    """(metrics per method, MSE per predicted frame per method, model predictions).

    The model's entry is named ``label``; the baselines are ``zeros``, ``mean frame`` and
    ``copy last frame``.
    """
    x = torch.from_numpy(np.array(test)).unsqueeze(2).float() / 255
    context, target = x[:, :10], x[:, 10:]
    preds = rollout_test(module, test)
    methods = {
        label: preds,
        "zeros": torch.zeros_like(target),
        "mean frame": mean_training_frame().expand_as(target),
        "copy last frame": context[:, -1:].expand_as(target),
    }
    metrics = {name: frame_metrics(p, target) for name, p in methods.items()}
    curves = {name: mse_per_frame(p, target).mean(0).tolist() for name, p in methods.items()}
    return metrics, curves, preds


def write_outputs(run_dir: Path, test: np.ndarray, preds: torch.Tensor, curves: dict) -> list[Path]:
    """Comparison video, training and per-frame plots in ``run_dir``."""
    videos = []
    for i in range(4):
        truth = torch.from_numpy(np.array(test[i])).unsqueeze(1).float() / 255
        pred = torch.cat((truth[:10], preds[i]))
        videos.append(comparison_video(truth, pred, context=10))
    paths = write_comparison(run_dir / "comparison", videos, fps=4, scale=2)
    csvs = sorted((run_dir / "logs").glob("version_*/metrics.csv"))
    if csvs:
        paths.append(plot_training(read_metrics_csv(csvs[-1]), run_dir / "training.png"))
    paths.append(
        plot_lines(
            curves,
            run_dir / "per_frame_mse.png",
            "MSE per frame over the rollout (Moving-MNIST-style test set)",
            "predicted frame",
            "MSE per frame",
        )
    )
    return paths


def run_quickstart(out: str, max_steps: int = STEPS, test_size: int | None = None, seed: int = 0):
    """Everything above; returns ``(run folder, metrics.json content)``."""
    t0 = time.time()
    test_path = prepare_data()
    run_dir = new_run_dir(out, "quickstart")
    raw = quickstart_run(run_dir.name, str(run_dir.parent), max_steps, seed)
    run = build_run_config(raw, "quickstart")
    status = fit(run)
    _, module, _ = load_module(run_dir / "checkpoints" / "last.ckpt")
    t_train = time.time() - t0
    test = np.load(test_path, mmap_mode="r")[:test_size]
    metrics, curves, preds = evaluate_all(module, test)
    result = {
        "metrics": metrics,
        "mse_per_predicted_frame": curves,
        "test_sequences": len(test),
        "steps": status.get("step"),
        "parameters": module.model.num_parameters(),
        "seconds_total": round(time.time() - t0, 1),
        "seconds_to_trained": round(t_train, 1),
        "load_average": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
    }
    files = write_outputs(run_dir, test, preds, curves)
    write_json(run_dir / "metrics.json", result)
    (run_dir / "summary.txt").write_text(summary(result, run_dir, files) + "\n")
    return run_dir, result


def summary(result: dict, run_dir: Path, files: list[Path] | None = None) -> str:
    """The one-screen summary: the table, the margin over the best baseline, where things are."""
    metrics = result["metrics"]
    ours = metrics[OURS]["mse"]
    best_name, best = min(
        ((n, m["mse"]) for n, m in metrics.items() if n != OURS),
        key=lambda t: t[1],
    )
    gain = 100 * (1 - ours / best)
    load = ", ".join(f"{v:.1f}" for v in result["load_average"])
    lines = [
        f"Moving-MNIST-style 10 -> 10, {result['test_sequences']} test sequences "
        "(generated from real MNIST digits; not the official test file)",
        "MSE/MAE per frame (sum over 64x64 pixels in [0, 1], mean over the 10 predicted frames)",
        "",
        format_table(metrics, COLUMNS),
        "",
        f"TTT-Linear: {gain:.1f}% lower MSE than the best baseline ({best_name}, {best:.1f}) "
        f"-> {'PASS' if gain >= 15 else 'FAIL'} (bar: 15%)",
        f"{result['parameters']:,} parameters, {result['steps']} steps, "
        f"{result['seconds_total'] / 60:.1f} min in all "
        f"({result['seconds_to_trained'] / 60:.1f} to a trained model; load average {load})",
        f"run folder: {run_dir}",
    ]
    lines += [f"  {p.name}" for p in files or []]
    return "\n".join(lines)
