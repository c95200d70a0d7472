"""Run independent checks under a time budget and write their report (``gpu_check.py``).

A check is ``fn(context, deadline, chk)``: it fills ``chk`` (rows, notes, status). One that
raises is recorded with its traceback and the next still runs; one that runs past its share
of the budget is stopped (``BudgetStop`` between two Python operations).
"""

from __future__ import annotations

import math
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Check:
    """One check's result: ``status`` is ``pass``/``fail`` (a verdict), ``ok`` (a
    measurement), ``skipped`` or ``error`` (it raised: ``error`` holds the traceback)."""

    name: str
    status: str = "ok"
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


class Deadline:
    """The time a check may still run in."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()


class BudgetStop(TimeoutError):
    """Raised by ``time_limit`` (and only by it): the code ran past its share of the budget.
    Its own class, so that a timeout of the code under check stays an error."""


def _alarm(signum, frame):
    raise BudgetStop("stopped: over its share of the time budget")


GRACE_S = 10.0
"""Time an enclosing limit still gives after an inner one stopped its code: enough to record
the stop and clean up. Without it the enclosing check's limit, set to end with its last case,
could fire in that case's clean-up and turn a stopped case into an error of the whole check."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``BudgetStop`` in this (main) thread after ``seconds`` (a long
    ``torch.compile`` is stopped between two Python operations). Nests: the earlier end
    wins, and when this one stops its code an enclosing limit gets at least ``GRACE_S``
    back. No limit when ``seconds`` is infinite."""
    if math.isinf(seconds):
        yield
        return
    handler = signal.signal(signal.SIGALRM, _alarm)
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, max(min(seconds, outer or seconds), 1e-3))
    stopped = False
    try:
        yield
    except BudgetStop:
        stopped = True
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        if outer:
            left = outer - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, GRACE_S if stopped else 1e-3))


def run_cases(
    chk: Check, deadline: Deadline, cases: list, fn: Callable, cleanup: Callable[[], None]
) -> None:
    """One row per case, ``fn(*case)``, then ``cleanup()``; a case that raises becomes a row
    with its error. One stopped at the deadline and the cases after it are listed in the
    notes as stopped and skipped: not run, so neither passed nor failed."""
    for case in cases:
        if deadline.remaining() <= 0:
            chk.notes.append(f"skipped (time budget): {case}")
            continue
        try:
            with time_limit(deadline.remaining()):
                chk.rows.append(fn(*case))
        except BudgetStop:
            chk.notes.append(f"stopped (time budget): {case}")
        except Exception as err:  # noqa: BLE001 - reported, the next case still runs
            chk.rows.append({"case": str(case), "error": f"{type(err).__name__}: {err}"[:500]})
        cleanup()


def verdict(chk: Check) -> str:
    """``pass`` when there are rows and every row passed, else ``fail``."""
    return "pass" if chk.rows and all(row.get("pass", False) for row in chk.rows) else "fail"


def run_checks(
    checks: dict[str, tuple[float, Callable]],
    context: Any,
    budget_s: float,
    cleanup: Callable[[], None],
) -> list[Check]:
    """Run ``checks`` (name: (share of the budget, function)) in order, each on its own.

    Each gets its share of the time left, in proportion to the shares of the checks still to
    run (the time a quick check leaves is passed on), and at least 20 s before it is stopped.
    """
    results, end = [], time.monotonic() + budget_s
    names = list(checks)
    for i, name in enumerate(names):
        share, fn = checks[name]
        remaining = sum(checks[n][0] for n in names[i:])
        deadline = Deadline(max(0.0, end - time.monotonic()) * share / remaining)
        chk, t0 = Check(name), time.perf_counter()
        try:
            with time_limit(max(deadline.remaining(), 20.0)):
                fn(context, deadline, chk)
        except Exception:  # noqa: BLE001 - reported in the results, the next check runs
            chk.status, chk.error = "error", traceback.format_exc(limit=8)
        chk.seconds = time.perf_counter() - t0
        print(f"[check] {name}: {chk.status} ({chk.seconds:.1f} s)", flush=True)
        results.append(chk)
        cleanup()
    return results


def fmt(value) -> str:
    """A table cell: ``-`` for None, thousands separators, else 3 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def markdown(title: str, env: dict, results: list[Check], command: str) -> str:
    """The report: title, command, environment, one summary table, then each check's rows,
    errors and notes."""
    shown = ", ".join(f"{k} {v}" for k, v in env.items() if k != "dry_run")
    lines = [title + "\n", f"Command: `{command}`  ", f"Environment: {shown}\n"]
    lines += ["| check | status | seconds |", "|---|---|---|"]
    lines += [f"| {c.name} | {c.status} | {c.seconds:.1f} |" for c in results]
    for c in results:
        lines.append(f"\n## {c.name}: {c.status}\n")
        rows = [r for r in c.rows if "error" not in r]
        if rows:
            keys = list(dict.fromkeys(k for r in rows for k in r))
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
        lines += [f"\n- error in {r['case']}: `{r['error']}`" for r in c.rows if "error" in r]
        lines += [f"\n{n}" for n in c.notes]
        if c.error:
            lines.append(f"\n```\n{c.error}```")
    return "\n".join(lines) + "\n"
