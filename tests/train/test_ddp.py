"""Two CPU processes (DDP over gloo) follow the single-process run on the same global batch
(language model and video)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


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
