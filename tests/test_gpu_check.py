"""``benchmarks/gpu_check.py`` runs end to end without a GPU (``--dry-run``: interpreter, toy
shapes) and writes every check; a check that raises is reported and the others still run;
a case past its time is stopped (``benchmarks/check_harness.py``); ``gpu_probe.py`` runs."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def script_module(name: str):
    """A module of ``benchmarks/`` (its folder on the path, as when the script runs)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def spin(seconds: float) -> dict:
    """A case that keeps the main thread busy for ``seconds`` (stoppable), then passes."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return {"pass": True}


@pytest.mark.slow
def test_dry_run_writes_every_check(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    names = list(script_module("gpu_check").CHECKS)
    assert [c["name"] for c in report["checks"]] == names
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status["fla_semantics"] == "skipped"  # flash-linear-attention is not installed
    assert all(status[n] in ("pass", "ok") for n in names if n != "fla_semantics"), status
    assert report["environment"]["dry_run"] is True
    for check in report["checks"]:
        assert check["name"] == "fla_semantics" or check["rows"], check["name"]
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("# GPU check: DRY RUN")
    for name in names:
        assert f"| {name} | {status[name]} |" in markdown and f"## {name}: " in markdown


def test_a_check_that_raises_is_reported_and_the_next_runs():
    harness = script_module("check_harness")

    def broken(context, deadline, chk):
        raise RuntimeError("no such kernel")

    def fine(context, deadline, chk):
        chk.rows.append({"x": context})

    checks = {"broken": (1.0, broken), "fine": (1.0, fine)}
    results = harness.run_checks(checks, 3, budget_s=10.0, cleanup=lambda: None)
    assert [(c.name, c.status) for c in results] == [("broken", "error"), ("fine", "ok")]
    assert "RuntimeError: no such kernel" in results[0].error
    assert results[1].rows == [{"x": 3}]
    report = harness.markdown("# title", {}, results, "cmd")
    assert "| broken | error |" in report and "no such kernel" in report


def test_a_case_past_its_deadline_is_stopped_and_the_rest_skipped():
    harness = script_module("check_harness")
    chk, deadline = harness.Check("slow"), harness.Deadline(0.3)

    harness.run_cases(chk, deadline, [(0.0,), (5.0,), (0.0,)], spin, cleanup=lambda: None)
    assert chk.rows == [{"pass": True}]  # the stopped case neither passed nor failed
    assert chk.notes == ["stopped (time budget): (5.0,)", "skipped (time budget): (0.0,)"]
    assert harness.verdict(chk) == "pass"


def test_a_stopped_case_is_recorded_within_its_checks_own_limit():
    """The check's limit ends with its last case's deadline: when the case is stopped, the
    check's limit leaves time to record it and clean up (it fired in the clean-up, on a GPU
    run, and turned the stop into an error of the whole check)."""
    harness = script_module("check_harness")
    chk = harness.Check("slow")

    with harness.time_limit(0.3):
        harness.run_cases(chk, harness.Deadline(0.3), [(5.0,)], spin, lambda: spin(0.05))
    assert chk.notes == ["stopped (time budget): (5.0,)"] and chk.rows == []


def test_a_timeout_of_the_checked_code_is_an_error_not_a_stop():
    harness = script_module("check_harness")
    chk = harness.Check("net")

    def times_out():
        raise TimeoutError("the socket timed out")

    harness.run_cases(chk, harness.Deadline(10.0), [()], times_out, cleanup=lambda: None)
    assert chk.rows == [{"case": "()", "error": "TimeoutError: the socket timed out"}]
    assert chk.notes == [] and harness.verdict(chk) == "fail"


def test_the_kernel_check_leaves_out_what_the_dispatcher_refuses_on_the_gpu():
    gpu_check = script_module("gpu_check")
    plan = gpu_check.Plan("cuda", False, capability=(9, 0))
    chk = gpu_check.Check("kernels_vs_dual")
    assert gpu_check.refused(plan, chk, "mlp", "bf16", True, 1000, False, (128, 64))
    assert chk.notes[0].startswith("refused by the dispatcher: ('mlp', 'bf16', 128, 64): TTT-MLP")
    for case in [("mlp", "fp32", True, 1000, False, (128, 64)), ("mlp", "bf16", True, 1000, False)]:
        assert not gpu_check.refused(plan, chk, *case)
    assert not gpu_check.refused(
        gpu_check.Plan("cuda", False, capability=(8, 0)),
        chk,
        "mlp",
        "bf16",
        True,
        1000,
        False,
        (128, 64),
    )
    assert len(chk.notes) == 1


def test_probe_overrides_the_warps_and_the_refusal(monkeypatch):
    """``gpu_probe.override_launches`` reaches the code the launches read: the dispatcher's
    refusal of the faulting launch and the chain kernels' launch options."""
    import ttt_video.kernels.api as kernels_api
    import ttt_video.kernels.triton.scan as scan

    monkeypatch.setattr(kernels_api, "hopper_mlp_fault", kernels_api.hopper_mlp_fault)
    monkeypatch.setattr(scan, "_launch_args", scan._launch_args)
    args = (torch.bfloat16, 128, 64, 512, (9, 0))
    assert kernels_api.triton_unsupported(*args) is not None
    assert scan._launch_args(128, 64, 16, False)["num_warps"] == 8
    script_module("gpu_probe").override_launches(4, force=True)
    assert kernels_api.triton_unsupported(*args) is None
    assert scan._launch_args(128, 64, 16, False)["num_warps"] == 4


@pytest.mark.slow
def test_probe_runs_one_launch_and_says_ok():
    """``benchmarks/gpu_probe.py`` (one launch per process, for a GPU) runs end to end in the
    interpreter (which ignores the warps) and ends with the errors and ``OK``."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_probe.py"), "mlp", "bf16", "32", "16"]
        + ["--tokens", "40", "--heads", "2", "--batch", "1", "--num-warps", "4", "--force"]
        + ["--dry-run"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("[mlp bf16 d=32 b=16 warps=4]") and last.endswith("; OK"), last
    output_error = float(last.split("error: output ")[1].split(",")[0])
    assert output_error < 1e-2  # bf16 rounding, as the bf16 dual form's
