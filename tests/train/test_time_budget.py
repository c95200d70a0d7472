"""Training to a wall-clock budget: the schedule runs on elapsed time, training stops when the
budget is spent, for the LM as for video; several processes are refused."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest

from ttt_video.train import time_budget
from ttt_video.train.config import ConfigError
from ttt_video.train.runner import fit
from ttt_video.train.tasks import load_run_config
from ttt_video.train.time_budget import TimeBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Hooks:
    def on_train_start(self) -> None:
        self.hook_ran = True


class Budgeted(TimeBudget, Hooks):
    def __init__(self, seconds: float | None) -> None:
        self.time_budget_s, self.total_steps = seconds, 1000
        self.trainer = SimpleNamespace(should_stop=False)


def test_the_schedule_follows_whichever_is_further_the_step_or_the_clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(time_budget.time, "monotonic", clock)
    module = Budgeted(60.0)
    assert module.progress(7) == 7  # before training starts
    module.on_train_start()
    assert module.hook_ran  # the mixin passes the hook on
    clock.now += 30.0  # half the budget
    assert module.progress(10) == 500
    assert module.progress(800) == 800
    assert not module.trainer.should_stop
    module.stop_when_spent()
    assert not module.trainer.should_stop
    clock.now += 31.0
    module.stop_when_spent()
    assert module.trainer.should_stop and module.progress(10) >= 1000


def test_without_a_budget_the_schedule_is_the_step(monkeypatch):
    module = Budgeted(None)
    module.on_train_start()
    module.stop_when_spent()
    assert module.progress(10) == 10 and not module.trainer.should_stop


def test_an_lm_run_stops_at_its_budget_with_a_finished_schedule(write_config):
    run = load_run_config(
        write_config(
            data={"time_budget_s": 2.0},
            trainer={"max_steps": 100_000, "val_check_interval": 100_000, "logger": "csv"},
        )
    )
    status = fit(run)
    assert status["state"] == "completed" and 1 <= status["step"] < 100_000
    rows = list(csv.DictReader((run.run_dir / "logs" / "version_0" / "metrics.csv").open()))
    lrs = [float(r["train/lr"]) for r in rows if r.get("train/lr")]
    assert lrs[-1] < 0.1 * max(lrs)  # decayed on time, not stuck at the start of a long cosine


def test_a_budget_needs_a_single_process(write_config):
    run = load_run_config(
        write_config(data={"time_budget_s": 2.0}, trainer={"devices": 2, "strategy": "ddp"})
    )
    with pytest.raises(ConfigError, match="data.time_budget_s: single-process"):
        fit(run)
