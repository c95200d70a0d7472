"""``ttt-video quickstart``: prepare data, train a small TTT-Linear frame predictor on the CPU,
evaluate it against trivial baselines, and write a run folder.

Letters: ``N`` test sequences, ``F0 = 10`` context frames, ``R = 10`` predicted frames,
``S = 64`` frame side.

Steps: (1) the Moving-MNIST-style data from real MNIST digits (``data_prep/moving_mnist.py``'s
functions; idempotent); (2) the shipped run file ``configs/video/quickstart.yaml``
(``video_predict`` with the ``video_ttt_linear_small`` preset) through the shared runner;
(3) the fixed test set, 100 sequences at a time: the model rolls out ``R`` frames after
``F0``, feeding its predictions back, against three baselines (all zeros, the mean training
frame, the last context frame repeated); (4) the run folder: ``comparison.mp4/.gif`` (ground truth |
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
    markdown_table,
    new_run_dir,
    plot_lines,
    write_comparison,
)
from ttt_video.data.fetch import fetch_mnist_digits
from ttt_video.data.synthetic.moving_mnist import MovingMNIST, build_fixed_set, fixed_set_path
from ttt_video.data.video.frames import frames_to_float
from ttt_video.io_utils import write_json
from ttt_video.train.config import config_path, read_yaml
from ttt_video.train.run_report import write_run_report
from ttt_video.train.runner import fit, load_module
from ttt_video.train.tasks import build_run_config
from ttt_video.train.video_metrics import metrics_per_frame
from ttt_video.train.video_module import VideoPredictModule

CONFIG = "quickstart"
"""The shipped run file of the quickstart (``configs/video/quickstart.yaml``)."""
STEPS = 1800
COLUMNS = ["mse", "mae", "psnr", "ssim"]
OURS = "TTT-Linear (ours)"
SHOWN = 4
"""Test sequences in the comparison video."""


def quickstart_run(name: str, out_dir: str, max_steps: int, seed: int) -> dict:
    """The quickstart's run file as a mapping: the shipped ``quickstart`` config
    (``configs/video/quickstart.yaml``, the recipe) with this run's name, folder, length and seed.

    ``benchmarks/video_mmnist.py`` trains the other backbones from it with overrides.
    """
    raw = read_yaml(CONFIG)
    raw.update(name=name, out_dir=out_dir)
    raw["trainer"] = {**raw.get("trainer", {}), "max_steps": max_steps, "seed": seed}
    return raw


def prepare_data(variant: str) -> Path:
    """Fetch the digits and build ``variant``'s val/test sets if missing; the test set's path."""
    digits = fetch_mnist_digits()
    print(f"digits: {digits}")
    for split in ("val", "test"):
        path = build_fixed_set(variant, split, progress=lambda r, s=split: tqdm(r, desc=s))
        print(f"{split} set: {path}")
    return fixed_set_path(variant, "test")


def mean_training_frame(n: int = 200) -> torch.Tensor:
    """The per-pixel mean of ``n`` generated training sequences: ``[1, S, S]`` in [0, 1]."""
    data = MovingMNIST("standard", "train", length=n, seed=123)
    return sum(frames_to_float(data[i]["frames"]).mean(0) for i in range(n)) / n


@torch.no_grad()
def evaluate_all(
    module: VideoPredictModule, test: np.ndarray, label: str = OURS, batch: int = 100
) -> tuple[dict, dict, torch.Tensor]:
    """(metrics per method, MSE per predicted frame per method, the model's predictions of the
    first ``SHOWN`` sequences ``[SHOWN, R, 1, S, S]``) on test sequences uint8 ``[N, F, S, S]``.

    The model's entry is named ``label``; the baselines are ``zeros``, ``mean frame`` and
    ``copy last frame``. ``test`` (a memory map of the fixed set, say) is read ``batch``
    sequences at a time, each batch rolled out and scored: only the metrics of every frame
    (``[N, R]`` per metric and method) are kept, never the whole set, its predictions or the
    metrics' maps.
    """
    mean_frame = mean_training_frame()
    per_frame: dict[str, dict[str, torch.Tensor]] = {}  # method -> metric -> [N, R]
    shown = []
    for i in tqdm(range(0, len(test), batch), desc="test rollout"):
        frames = torch.from_numpy(np.array(test[i : i + batch])).unsqueeze(2)
        preds, target = module.evaluate(frames)
        last = frames_to_float(frames[:, module.num_input - 1])  # [B, 1, S, S]
        methods = {
            label: preds,
            "zeros": torch.zeros_like(target),
            "mean frame": mean_frame.expand_as(target),
            "copy last frame": last[:, None].expand_as(target),
        }
        for name, pred in methods.items():
            scores = per_frame.setdefault(name, {})
            for metric, v in metrics_per_frame(pred, target, openstl=True).items():
                if metric not in scores:
                    # allocated once: small tensors kept from every batch, between the large
                    # short-lived ones, fragment the heap (glibc): it grew by 1.3 GB over 2,000
                    # sequences
                    scores[metric] = v.new_empty((len(test), *v.shape[1:]))
                scores[metric][i : i + len(v)] = v
        if i < SHOWN:
            shown.append(preds[: SHOWN - i].clone())
    metrics = {name: {m: v.mean().item() for m, v in ms.items()} for name, ms in per_frame.items()}
    curves = {name: ms["mse"].mean(0).tolist() for name, ms in per_frame.items()}
    return metrics, curves, torch.cat(shown)


def write_outputs(
    run_dir: Path, test: np.ndarray, num_input: int, preds: torch.Tensor, curves: dict
) -> list[Path]:
    """The captioned comparison video (the first ``SHOWN`` test sequences: their ``num_input``
    given frames, then ``preds [SHOWN, R, 1, S, S]``, their rollouts) and the per-frame plot."""
    videos = []
    for i in range(SHOWN):
        truth = frames_to_float(torch.from_numpy(np.array(test[i])).unsqueeze(1))
        pred = torch.cat((truth[:num_input], preds[i]))
        videos.append(comparison_video(truth, pred, num_input, name="TTT-Linear", scale=2))
    paths = write_comparison(run_dir / "comparison", videos, fps=4)
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
    run_dir = new_run_dir(out, "quickstart")
    raw = quickstart_run(run_dir.name, str(run_dir.parent), max_steps, seed)
    test_path = prepare_data(raw["data"]["variant"])
    run = build_run_config(raw, str(config_path(CONFIG)))
    status = fit(run)
    _, module, _ = load_module(run_dir / "checkpoints" / "last.ckpt")
    t_train = time.time() - t0
    test = np.load(test_path, mmap_mode="r")[:test_size]
    metrics, curves, preds = evaluate_all(module, test)
    result = {
        "metrics": metrics,
        "mse_per_predicted_frame": curves,
        "test_sequences": len(test),
        "context_frames": module.num_input,
        "predicted_frames": module.num_output,
        "steps": status.get("step"),
        "parameters": module.model.num_parameters(),
        "seconds_total": round(time.time() - t0, 1),
        "seconds_to_trained": round(t_train, 1),
        "load_average": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
    }
    files = write_outputs(run_dir, test, module.num_input, preds, curves)
    files.append(write_json(run_dir / "metrics.json", result))
    files += [write_run_report(run_dir, [report_section(result)]), run_dir / "training.png"]
    (run_dir / "summary.txt").write_text(summary(result, run_dir, files) + "\n")
    return run_dir, result


def margin(metrics: dict) -> str:
    """The model's MSE per frame against the best baseline's, in a sentence."""
    ours = metrics[OURS]["mse"]
    best_name, best = min(
        ((n, m["mse"]) for n, m in metrics.items() if n != OURS),
        key=lambda t: t[1],
    )
    gain = 100 * (1 - ours / best)
    return (
        f"TTT-Linear: {abs(gain):.1f}% {'lower' if gain >= 0 else 'higher'} MSE per frame than "
        f"the best baseline ({ours:.1f} against {best:.1f} for {best_name})"
    )


def report_section(result: dict) -> str:
    """The test-set comparison as a Markdown section of the run's ``report.md``."""
    metrics, F0, R = result["metrics"], result["context_frames"], result["predicted_frames"]
    return "\n".join(
        [
            f"## Test set: Moving-MNIST-style, {F0} frames given, {R} predicted",
            "",
            f"{result['test_sequences']} test sequences generated from real MNIST digits (not "
            "the official test file). MSE and MAE per frame: summed over the 64x64 pixels in "
            f"[0, 1], averaged over the {R} predicted frames. `psnr_openstl` and `ssim_openstl`: "
            "PSNR and SSIM as published tables compute them (OpenSTL's definitions).",
            "",
            markdown_table(metrics, [*COLUMNS, "psnr_openstl", "ssim_openstl"]),
            "",
            f"**{margin(metrics)}.** The videos below: truth on the left, the model's rollout "
            "on the right (`given` frames are shown to the model, `+k` are predicted).",
        ]
    )


def summary(result: dict, run_dir: Path, files: list[Path] | None = None) -> str:
    """The one-screen summary: the table, the margin over the best baseline, where things are."""
    metrics, F0, R = result["metrics"], result["context_frames"], result["predicted_frames"]
    load = ", ".join(f"{v:.1f}" for v in result["load_average"])
    lines = [
        f"Moving-MNIST-style {F0} -> {R}, {result['test_sequences']} test sequences "
        "(generated from real MNIST digits; not the official test file)",
        f"MSE/MAE per frame (sum over 64x64 pixels in [0, 1], mean over the {R} predicted frames)",
        "",
        format_table(metrics, COLUMNS),
        "",
        margin(metrics),
        f"{result['parameters']:,} parameters, {result['steps']} steps, "
        f"{result['seconds_total'] / 60:.1f} min in all "
        f"({result['seconds_to_trained'] / 60:.1f} to a trained model; load average {load})",
        f"run folder: {run_dir}",
    ]
    lines += [f"  {p.name}" for p in files or []]
    return "\n".join(lines)
