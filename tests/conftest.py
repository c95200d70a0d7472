"""Suite-wide set-up and the fixtures of the training and command-line tests.

Triton kernels are tested on CPU tensors in the Triton interpreter. Triton 3.8 reads
``TRITON_INTERPRET`` when ``@triton.jit`` decorates a function, including its own device
library, decorated when ``triton.language`` is first imported (Lightning imports Triton
too), so the variable is set here, before any test module imports anything.

The tests run many small tensor ops, for which one intra-op thread is faster and steadier
than several that wait on each other (and the 2-process DDP test would oversubscribe the
cores); ``OMP_NUM_THREADS`` is honoured when set.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The imports below come after the environment above (hence E402).
import csv  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from ttt_video.data.text.shards import TextPrepOptions, prepare_text  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

WORDS = "the cat sat on a mat while a dog ran past the old house by the sea".split()


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """Byte-level shards of 60 short documents (20% held out for validation)."""
    root = tmp_path_factory.mktemp("corpus")
    rng = torch.Generator().manual_seed(0)
    with open(root / "docs.jsonl", "w") as f:
        for _ in range(60):
            idx = torch.randint(len(WORDS), (120,), generator=rng).tolist()
            f.write(json.dumps({"text": " ".join(WORDS[i] for i in idx) + "."}) + "\n")
    options = TextPrepOptions(val_fraction=0.2, progress=False, verbose=False)
    return prepare_text([root / "docs.jsonl"], root / "byte", options).folder


def tiny_run(shards: Path, out_dir: Path, **sections) -> dict:
    """A 4-step run of a one-block width-32 TTT-Linear on ``shards`` (sections merged in)."""
    run = {
        "task": "lm",
        "out_dir": str(out_dir),
        "model": {
            "preset": "ttt_linear_debug",
            "num_layers": 1,
            "width": 32,
            "num_heads": 2,
            "ffn_width": 64,
        },
        "data": {"path": str(shards), "block_len": 32, "batch_size": 4},
        "optim": {"lr": 1e-2},
        "trainer": {
            "accelerator": "cpu",
            "max_steps": 4,
            "val_check_interval": 2,
            "limit_val_batches": 2,
            "log_every": 1,
            "progress_bar": False,
        },
    }
    for name, values in sections.items():
        run[name] = {**run[name], **values} if isinstance(values, dict) else values
    return run


@pytest.fixture
def write_config(tmp_path, tiny_shards):
    """``write_config(name, **sections) -> path`` of a tiny run YAML under ``tmp_path``."""

    def write(name: str = "tiny", **sections) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(tiny_run(tiny_shards, tmp_path / "runs", **sections)))
        return path

    return write


def train_losses(run_dir: Path) -> dict[int, float]:
    """``{step: train/loss}`` over every log version (one per start) of a run folder."""
    out = {}
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        for row in csv.DictReader(path.open()):
            if row["train/loss"]:
                out[int(row["step"])] = float(row["train/loss"])
    return out


@pytest.fixture
def losses():
    """The :func:`train_losses` reader."""
    return train_losses
