"""Training to a wall-clock budget (``data.time_budget_s``), for the LM and video modules.

A module given ``time_budget_s`` stops training after the first step that ends past the
budget, and its learning-rate schedule runs on whichever is further along: the step, or the
elapsed fraction of the budget times the schedule's length (``progress``). A run on a busy
machine so ends on time with a finished schedule (warm-up and decay included). The clock
starts when training starts; a resumed run gets the whole budget again. Single-process runs
only (``run_time_budget``).
"""

from __future__ import annotations

import time

from ttt_video.train.config import ConfigError, RunConfig
from ttt_video.train.runner import world_size


class TimeBudget:
    """Mixin for a ``LightningModule`` with ``time_budget_s`` (None: no budget) and
    ``total_steps`` (the schedule's length) attributes; list it before ``LightningModule``."""

    time_budget_s: float | None
    total_steps: int
    _budget_start: float | None = None

    def progress(self, step: int) -> int:
        """The schedule step: ``step``, or further when the time budget is running out."""
        if self.time_budget_s is None or self._budget_start is None:
            return step
        elapsed = (time.monotonic() - self._budget_start) / self.time_budget_s
        return max(step, round(elapsed * self.total_steps))

    def on_train_start(self) -> None:
        super().on_train_start()
        self._budget_start = time.monotonic()

    def stop_when_spent(self) -> None:
        """Ask the trainer to stop when the budget has passed (call after each batch)."""
        if self.time_budget_s is None or self._budget_start is None:
            return
        if time.monotonic() - self._budget_start > self.time_budget_s:
            self.trainer.should_stop = True


def run_time_budget(run: RunConfig) -> float | None:
    """``data.time_budget_s``; a ``ConfigError`` when the run has several processes.

    Each process would read its own clock, so ranks could stop at different steps (a hang in
    the gradient all-reduce) and decay their learning rates differently.
    """
    budget = run.data.time_budget_s
    if budget is not None and world_size(run.trainer) > 1:
        raise ConfigError(
            "data.time_budget_s: single-process runs only (ranks would stop at different "
            "steps); bound a multi-process run with trainer.max_steps"
        )
    return budget
