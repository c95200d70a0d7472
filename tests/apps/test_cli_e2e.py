"""End to end through ``ttt_video.apps.cli.main``: fit, validate, resume, generate, eval-lm."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from ttt_video.apps.cli import main
from ttt_video.data.text.dataset import TokenBlockDataset
from ttt_video.train.config import resolved_dict
from ttt_video.train.tasks import load_run_config


@pytest.mark.slow
def test_fit_validate_generate_eval(write_config, tmp_path, capsys, losses):
    cfg = write_config()
    assert main(["fit", "--config", str(cfg), "--model.mini_batch_size", "8"]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed" and status["step"] == 4
    saved = load_run_config(run_dir / "config.yaml")
    assert saved.model.mini_batch_size == 8
    assert resolved_dict(saved) == yaml.safe_load((run_dir / "config.yaml").read_text())
    curve = losses(run_dir)
    assert sorted(curve) == [0, 1, 2, 3] and curve[3] < curve[0]
    metrics = next((run_dir / "logs").glob("version_0/metrics.csv")).read_text()
    assert "perf/tokens_per_s" in metrics and "perf/mfu" in metrics
    assert list((run_dir / "tb").glob("version_0/events.out.tfevents.*"))

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    capsys.readouterr()
    assert main(["validate", "--ckpt", str(ckpt)]) == 0
    val = float(capsys.readouterr().out.split("val/loss ")[1].split(",")[0])
    assert val == pytest.approx(status["val/loss"], rel=1e-5)

    assert (
        main(["generate", "--ckpt", str(ckpt), "--prompt", "the cat", "--max-new-tokens", "20"])
        == 0
    )
    assert capsys.readouterr().out.startswith("the cat")
    greedy = ["generate", "--ckpt", str(ckpt), "--prompt", "the", "--temperature", "0"]
    assert main([*greedy, "--max-new-tokens", "8"]) == 0
    eager = capsys.readouterr().out
    assert main([*greedy, "--max-new-tokens", "8", "--compile"]) == 0
    assert capsys.readouterr().out == eager

    out = tmp_path / "eval"
    args = ["eval-lm", "--ckpt", str(ckpt), "--ckpt", str(ckpt), "--label", "a", "--label", "b"]
    assert main([*args, "--out", str(out), "--max-batches", "2"]) == 0
    rows = list(csv.DictReader((out / "per_position_loss.csv").open()))
    assert len(rows) == 32 and rows[0]["a"] == rows[0]["b"]
    assert (out / "per_position_loss.png").stat().st_size > 0
    bands = list(csv.DictReader((out / "per_position_bands.csv").open()))
    assert [(int(b["first"]), int(b["last"])) for b in bands] == [
        (0, 0), (1, 1), (2, 3), (4, 7), (8, 15), (16, 31)
    ]  # fmt: skip
    late = [float(r["a"]) for r in rows[16:]]
    assert float(bands[-1]["a"]) == pytest.approx(sum(late) / 16, abs=1e-4)
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert float(summary[0]["val_loss"]) == pytest.approx(val, rel=1e-3)

    strided = tmp_path / "strided"
    assert main(["eval-lm", "--ckpt", str(ckpt), "--out", str(strided), "--stride", "8"]) == 0
    val_tokens = TokenBlockDataset(saved.data.path, "val", 32).num_tokens
    overlapping = int(list(csv.DictReader((strided / "summary.csv").open()))[0]["tokens"])
    assert overlapping == ((val_tokens - 1 - 32) // 8 + 1) * 32  # a block every 8 tokens


@pytest.mark.slow
def test_resume_gives_the_same_losses(write_config, tmp_path, losses):
    cfg = write_config(trainer={"max_steps": 6, "val_check_interval": 3})
    assert main(["fit", "--config", str(cfg), "--name", "whole"]) == 0
    stop = ["--name", "split", "--optim.schedule_steps", "6"]
    assert main(["fit", "--config", str(cfg), *stop, "--trainer.max_steps", "3"]) == 0
    assert main(["fit", "--config", str(cfg), *stop, "--resume", "auto"]) == 0
    whole = losses(tmp_path / "runs" / "whole")
    split = losses(tmp_path / "runs" / "split")
    assert sorted(whole) == sorted(split) == list(range(6))
    for step in whole:
        assert split[step] == pytest.approx(whole[step], rel=1e-6, abs=1e-6), step
