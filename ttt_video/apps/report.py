"""Outputs of the quickstart and the demos: side-by-side videos, plots, tables, run folders.

Letters: ``F`` frames, ``C`` channels, ``H`` height, ``W`` width, ``R`` predicted frames.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from ttt_video.data.video.writer import (  # noqa: F401 (the demos take comparison_video from here)
    comparison_video,
    upscale,
    video_grid,
    write_video,
)
from ttt_video.io_utils import pyplot


def new_run_dir(parent: str | Path, name: str) -> Path:
    """``parent/name``, or ``parent/name-2``, ``-3``, ... when it exists; created."""
    parent = Path(parent)
    path, k = parent / name, 1
    while path.exists():
        k += 1
        path = parent / f"{name}-{k}"
    path.mkdir(parents=True)
    return path


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, ``"2.1, 2.0, 1.9"`` (for benchmark reports)."""
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def save_report(folder: Path, text: str) -> int:
    """Write ``text`` to ``folder/report.md``, print it and the path; 0 (an exit status)."""
    (folder / "report.md").write_text(text)
    print(text)
    print(f"report: {folder / 'report.md'}")
    return 0


def write_comparison(
    path_stem: Path, videos: list[Tensor], fps: float, scale: int = 1
) -> list[Path]:
    """Tile ``videos`` (``[F, C, H, W]`` each) in a grid and write ``.mp4`` and ``.gif``."""
    grid = video_grid(videos, cols=min(2, len(videos)), gap=6).clamp(0, 1)
    grid = upscale(grid, scale) if scale > 1 else grid
    mp4 = write_video(path_stem.with_suffix(".mp4"), grid, fps, pad_to_even=True)
    gif = write_video(path_stem.with_suffix(".gif"), grid, fps)
    return [mp4, gif]


def plot_lines(
    curves: dict[str, Sequence[float]],
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    x0: int = 1,
    x: Sequence[float] | None = None,
) -> Path:
    """One line per named curve, as a PNG: against ``x`` (one per point) when given, else
    against ``x0, x0+1, ...``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, ys in curves.items():
        xs = range(x0, x0 + len(ys)) if x is None else x
        ax.plot(xs, ys, label=name, marker="." if len(ys) <= 30 else None)
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


def markdown_table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    """A Markdown table: one row per name, one column per metric (3 decimals)."""
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[c]:.3f}" for c in columns) + " |")
    return "\n".join(lines)
