"""Export a training run's checkpoint as a folder to share (``ttt-video export``).

The folder (``out_dir``) holds what ``save_pretrained`` writes plus a model card::

    config.json         model type, library version, every field of the model config
    classes.json        class names by label index (classification runs only)
    model.safetensors   the weights
    README.md           the model card: how to load it, the run's last metrics (from the
                        run folder, when the checkpoint still sits in it), model config, data

It loads with ``ttt_video.load(out_dir)``, without Lightning, the run file or the data.
Files of those names already in ``out_dir`` are replaced.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from ttt_video import __version__
from ttt_video.io_utils import write_json
from ttt_video.train.config import dump_yaml
from ttt_video.train.runner import (
    CHECKPOINTS,
    STATUS,
    load_run_from_checkpoint,
    model_from_checkpoint,
)

CARD_FILE = "README.md"


def export_run(ckpt: str | Path, out_dir: str | Path) -> Path:
    """Write the model of run checkpoint ``ckpt`` into ``out_dir`` (module docstring).

    Returns:
        ``out_dir``.

    Raises:
        FileNotFoundError: ``ckpt`` is missing. ``ValueError``: it is not a file this package
            loads with ``weights_only=True``. ``ConfigError``: it holds no run config.
    """
    ckpt = Path(ckpt)
    run, checkpoint = load_run_from_checkpoint(ckpt)
    model = model_from_checkpoint(run, checkpoint)
    out = model.save_pretrained(out_dir)
    if checkpoint.get("class_names"):
        write_json(out / "classes.json", checkpoint["class_names"])
    run_dir = ckpt.parent.parent if ckpt.parent.name == CHECKPOINTS else None
    card = [
        f"# {run.name}: a ttt_video `{run.task}` model",
        "",
        f"`{type(model).__name__}` with {model.num_parameters():,} trainable parameters, "
        f"exported from `{ckpt}` (step {checkpoint.get('global_step')}) by ttt_video "
        f"{__version__}.",
        "",
        "## Use",
        "",
        "```python",
        "import ttt_video",
        "",
        f'model = ttt_video.load("{out}", device="auto")  # eval mode',
        "```",
        "",
        "## Last metrics of the run",
        "",
        *metrics_section(run_dir),
        "## Model config (`config.json`)",
        "",
        "```yaml",
        dump_yaml(asdict(model.saved_config())).rstrip(),
        "```",
        "",
        "## Data",
        "",
        "```yaml",
        dump_yaml(checkpoint["run_config"]["data"]).rstrip(),
        "```",
    ]
    (out / CARD_FILE).write_text("\n".join(card) + "\n")
    return out


def last_metrics(run_dir: Path) -> dict[str, tuple[int, float]]:
    """``{metric: (step, value)}``: the last logged value of each metric over every CSV log
    version of a run folder (``logs/version_<i>/metrics.csv``, one per (re)start)."""
    logs = sorted(
        (run_dir / "logs").glob("version_*/metrics.csv"),
        key=lambda p: int(p.parent.name.removeprefix("version_")),
    )
    last: dict[str, tuple[int, float]] = {}
    for path in logs:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                step = int(row["step"])
                last |= {
                    k: (step, float(v)) for k, v in row.items() if k not in ("epoch", "step") and v
                }
    return last


def metrics_section(run_dir: Path | None) -> list[str]:
    """Markdown lines of the model card's metrics: the run's state (``status.json``) and a
    table of :func:`last_metrics`."""
    if run_dir is None or not (run_dir / STATUS).is_file():
        return ["The checkpoint is not in a run folder: no metrics.", ""]
    status = json.loads((run_dir / STATUS).read_text())
    lines = [f"Run `{run_dir}`: {status.get('state')} at step {status.get('step', '?')}.", ""]
    if metrics := last_metrics(run_dir):
        lines += ["| metric | value | logged at step |", "|---|---|---|"]
        lines += [f"| {k} | {v:.6g} | {step} |" for k, (step, v) in sorted(metrics.items())]
        lines.append("")
    return lines
