"""Outputs of the quickstart and the demos: side-by-side videos, plots, tables, run folders.

Letters: ``F`` frames, ``C`` channels, ``H`` height, ``W`` width, ``R`` predicted frames.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from torch import Tensor

from ttt_video.data.video.writer import side_by_side, video_grid, write_video


def new_run_dir(parent: str | Path, name: str) -> Path:
    """``parent/name``, or ``parent/name-2``, ``-3``, ... when it exists; created."""
    parent = Path(parent)
    path, k = parent / name, 1
    while path.exists():
        k += 1
        path = parent / f"{name}-{k}"
    path.mkdir(parents=True)
    return path


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def upscale(frames: Tensor, factor: int) -> Tensor:
    """``[F, C, H, W]`` -> ``[F, C, factor H, factor W]`` (nearest), for watchable small frames."""
    return frames.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def comparison_video(truth: Tensor, pred: Tensor, context: int, marker: int = 3) -> Tensor:
    """Ground truth | prediction, ``[F, C, H, W]`` float in [0, 1] each -> one side-by-side video.

    Frames ``>= context`` of the prediction carry a white bar on top (predicted, not given).
    """
    pred = pred.clone()
    pred[context:, :, :marker] = 1.0
    return side_by_side(truth, pred, gap=4)


def write_comparison(
    path_stem: Path, videos: list[Tensor], fps: float, scale: int = 1
) -> list[Path]:
    """Tile ``videos`` (``[F, C, H, W]`` each) in a grid and write ``.mp4`` and ``.gif``."""
    grid = video_grid(videos, cols=min(2, len(videos)), gap=6).clamp(0, 1)
    grid = upscale(grid, scale) if scale > 1 else grid
    mp4 = write_video(path_stem.with_suffix(".mp4"), grid, fps, pad_to_even=True)
    gif = write_video(path_stem.with_suffix(".gif"), grid, fps)
    return [mp4, gif]


def read_metrics_csv(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Lightning's ``metrics.csv`` -> ``{metric: [(step, value), ...]}`` (empty cells skipped)."""
    series: dict[str, list[tuple[int, float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    series.setdefault(key, []).append((step, float(value)))
    return series


def plot_training(series: dict[str, list[tuple[int, float]]], path: Path) -> Path:
    """Training loss and validation MSE against the step, as a PNG."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in (
        (axes[0], "train/loss", "training loss (per pixel)"),
        (axes[1], "val/mse", "validation MSE per frame (rollout)"),
    ):
        points = series.get(key, [])
        if points:
            ax.plot(*zip(*points), marker="." if len(points) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lines(
    curves: dict[str, list[float]], path: Path, title: str, xlabel: str, ylabel: str, x0: int = 1
) -> Path:
    """One line per named curve (x = ``x0, x0+1, ...``), as a PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, ys in curves.items():
        ax.plot(range(x0, x0 + len(ys)), ys, label=name, marker="." if len(ys) <= 30 else None)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    """A fixed-width text table: one row per name, one column per metric."""
    width = max(len(n) for n in rows) + 2
    lines = [f"{'':<{width}}" + "".join(f"{c:>10}" for c in columns)]
    for name, values in rows.items():
        lines.append(f"{name:<{width}}" + "".join(f"{values[c]:>10.3f}" for c in columns))
    return "\n".join(lines)


def write_json(path: Path, data: dict) -> Path:
    """Write ``data`` as indented JSON."""
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def to_float_frames(frames: Tensor) -> Tensor:
    """uint8 or float frames -> float in [0, 1]."""
    return frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()
