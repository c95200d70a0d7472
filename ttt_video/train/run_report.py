"""``report.md``: what a person reads first in a run folder, rendered by GitHub as it is.

It holds the run's state, any sections an app adds (the quickstart's comparison with its
baselines), the last value of every logged metric, the training curves (``training.png``,
drawn here from the CSV logs: the training loss and the task's main validation metric),
the videos and plots of the folder (``*.gif`` shown, ``*.mp4`` linked), and the resolved
``config.yaml``; every link is relative, so the folder can be moved or pushed as a whole.

It lives with the runner, not with the apps, because the runner writes it and the
training code does not import the apps.

The runner writes it when a run completes, so every run folder has one; apps that add
files to a run folder (the quickstart) write it again afterwards, with their own sections.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from ttt_video.io_utils import pyplot, write_atomic

REPORT = "report.md"
TRAINING_PLOT = "training.png"
TITLES = {
    "train/loss": "training loss",
    "val/loss": "validation loss",
    "val/mse": "validation MSE per frame (rollout)",
    "val/top1": "validation top-1 accuracy",
}
"""Plot titles of the metrics ``plot_training`` knows (others are titled by their name)."""


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


def run_metrics(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The series of every ``logs/version_*/metrics.csv`` of a run, in version order (a
    resumed run continues in a new version)."""
    series: dict[str, list[tuple[int, float]]] = {}
    paths = (run_dir / "logs").glob("version_*/metrics.csv")
    for path in sorted(paths, key=lambda p: int(p.parent.name.split("_")[-1])):
        for key, points in read_metrics_csv(path).items():
            series.setdefault(key, []).extend(points)
    return series


def plot_training(
    series: dict[str, list[tuple[int, float]]],
    path: Path,
    keys: Sequence[str] = ("train/loss", "val/loss"),
) -> Path:
    """One panel per metric of ``keys`` (those with points) against the step, as a PNG."""
    keys = [k for k in keys if series.get(k)]
    plt = pyplot()
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(5 * max(1, len(keys)), 3.6))
    for ax, key in zip(fig.axes, keys):
        points = series[key]
        ax.plot(*zip(*points), marker="." if len(points) < 30 else None)
        ax.set_title(TITLES.get(key, key))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.4e}"


def metrics_table(series: dict[str, list[tuple[int, float]]]) -> str:
    """A Markdown table of each metric's last value and the step it was logged at."""
    lines = ["| metric | last value | at step |", "|---|---:|---:|"]
    for key in sorted(series):
        step, value = series[key][-1]
        lines.append(f"| `{key}` | {_number(value)} | {step} |")
    return "\n".join(lines)


def write_run_report(run_dir: str | Path, sections: Sequence[str] = ()) -> Path:
    """Write ``run_dir/report.md`` (and ``training.png``) from what the folder holds.

    ``sections``: Markdown blocks placed after the run's state (an app's own results).
    """
    run_dir = Path(run_dir)
    status_path, config_path = run_dir / "status.json", run_dir / "config.yaml"
    status = json.loads(status_path.read_text()) if status_path.is_file() else {}
    series = run_metrics(run_dir)
    lines = [f"# Run `{run_dir.name}`", ""]
    if status:
        lines += [f"State: **{status.get('state', '?')}** at step {status.get('step', '?')}.", ""]
    lines += [block for section in sections for block in (section, "")]
    if series:
        val_key = next((k for k in ("val/mse", "val/top1") if k in series), "val/loss")
        plot_training(series, run_dir / TRAINING_PLOT, keys=("train/loss", val_key))
        lines += ["## Logged metrics (last values)", "", metrics_table(series), ""]
        lines += ["## Training", "", f"![training curves]({TRAINING_PLOT})", ""]
    media = [p for p in sorted(run_dir.iterdir()) if p.suffix in (".gif", ".png", ".mp4")]
    media = [p for p in media if p.name != TRAINING_PLOT]
    if media:
        lines += ["## Videos and plots", ""]
        for p in media:
            shown = f"[{p.name}]({p.name})" if p.suffix == ".mp4" else f"![{p.stem}]({p.name})"
            lines += [f"**{p.name}**", "", shown, ""]
    if config_path.is_file():
        config = ["```yaml", config_path.read_text().rstrip(), "```"]
        summary = "<summary>the resolved run (<code>config.yaml</code>)</summary>"
        lines += ["## Configuration", "", "<details>", summary, "", *config, "", "</details>", ""]
    if (run_dir / "tb").is_dir():
        lines += [
            "TensorBoard (curves, rollout videos, hyperparameters): "
            "`tensorboard --logdir tb` in this folder.",
            "",
        ]
    path = run_dir / REPORT
    write_atomic(path, "\n".join(lines))
    return path
