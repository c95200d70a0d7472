"""Two CPU processes (DDP over gloo) follow the single-process run on the same global batch
(language model and video), and share the validation set."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ttt_video.data.epochs import EpochDataModule
from ttt_video.train.run_report import read_metrics_csv


def fit(cfg, name: str, *extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ttt_video.apps.cli", "fit", "--config", str(cfg), "--name", name]
    done = subprocess.run([*cmd, *extra], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(write_config, tmp_path, losses):
    cfg = write_config(trainer={"max_steps": 3, "val_check_interval": 3})
    fit(cfg, "single", "--data.batch_size", "4")
    ddp = ("--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.batch_size", "2")
    fit(cfg, "ddp", *ddp)
    single = losses(tmp_path / "runs" / "single")
    two = losses(tmp_path / "runs" / "ddp")
    assert sorted(single) == sorted(two) == [0, 1, 2]
    for step in single:
        assert two[step] == pytest.approx(single[step], rel=1e-5), step


@pytest.mark.slow
def test_two_process_ddp_shares_video_epochs(tmp_path, losses):
    cfg = Path(__file__).resolve().parents[2] / "configs" / "video" / "mmnist_ttt_linear_debug.yaml"
    common = ("--out_dir", str(tmp_path), "--trainer.max_steps", "3", "--trainer.log_every", "1")
    common += ("--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "1")
    fit(cfg, "single", *common, "--data.batch_size", "4")
    ddp = ("--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.batch_size", "2")
    fit(cfg, "ddp", *common, *ddp)
    single, two = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert sorted(single) == sorted(two) == [0, 1, 2]
    for step in single:  # rank r takes every other clip: the global batches are the same
        assert two[step] == pytest.approx(single[step], rel=1e-5), step
    # validation: each rank rolls out 2 of the same 4 clips, and the metrics are averaged
    val = [read_metrics_csv(tmp_path / r / "logs/version_0/metrics.csv") for r in ("single", "ddp")]
    assert val[1]["val/mse"][-1][1] == pytest.approx(val[0]["val/mse"][-1][1], rel=1e-4)


class Numbers(EpochDataModule):
    """Validation items ``0..6``."""

    def setup(self, stage=None) -> None:
        self.val = torch.utils.data.TensorDataset(torch.arange(7))


def _validation_share(rank: int, port: int, out: Path) -> None:
    """Rank ``rank`` of 2 (gloo): write the validation items it sees to ``out/<rank>.txt``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    data = Numbers(batch_size=2, num_workers=0, seed=0)
    data.setup()
    seen = [int(i) for (batch,) in data.val_dataloader() for i in batch]
    (out / f"{rank}.txt").write_text(" ".join(map(str, seen)))
    dist.destroy_process_group()


def test_two_ranks_share_the_validation_set(tmp_path):
    """Every validation item once over the two ranks (7 items: 4 and 3)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_validation_share, args=(port, tmp_path), nprocs=2)
    assert (tmp_path / "0.txt").read_text() == "0 2 4 6"
    assert (tmp_path / "1.txt").read_text() == "1 3 5"
