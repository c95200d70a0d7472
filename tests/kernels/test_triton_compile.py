"""The Triton kernels compile for real GPUs without one: every launch the dispatcher makes
(forward, backward and decode of TTT-Linear and TTT-MLP over d in {32, 64, 96, 128}, b in
{16, 32, 64}, fp32, bf16 and fp16, causal or not, with or without an accumulated gradient)
compiles for sm_80, sm_86, sm_89 and sm_90, fits each one's shared memory per block, and
its bf16/fp16 products run on tensor cores. Every
launch that fits sm_80 or sm_90 is compiled on to a cubin (registers, spills, SASS); sm_86
and sm_89 get the TTGIR of sm_80, so they are compiled through the shared-memory
allocation only.

Compiling all of them takes hours on two cores, so ``compile_check --write`` keeps the
results in ``benchmarks/kernels_gpu_compile.json`` with the Triton cache key of every kernel
(a hash of its source and of what it calls). Here the launches are recorded afresh (the
interpreter runs the entry points with a recorder in place of each launch), the file must
hold a result for each of them under the kernels' current keys, and one launch is compiled
again for sm_80 and sm_90 (without the interpreter, in a child process) and must give the
same resources.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import triton

from ttt_video.kernels import api
from ttt_video.kernels.triton import compile_check as cc

REPORT = Path(__file__).parents[2] / "benchmarks" / "kernels_gpu_compile.json"
REGENERATE = f"run `python -m ttt_video.kernels.triton.compile_check --write {REPORT.name}`"
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def key(launch: dict) -> str:
    return json.dumps(launch, sort_keys=True)


@pytest.fixture(scope="session")
def report() -> dict:
    data = json.loads(REPORT.read_text())
    if data["triton"] != triton.__version__:
        pytest.skip(f"{REPORT.name} was compiled with Triton {data['triton']}")
    return data


@pytest.fixture(scope="session")
def launches() -> list[dict]:
    return cc.record_launches()


@pytest.fixture(scope="session")
def results(report, launches) -> dict[tuple[str, int], dict | None]:
    """``{(launch key, arch): result or None}`` for the launches recorded now."""
    stored = {(key(report["launches"][r["launch"]]), r["arch"]): r for r in report["results"]}
    return {(key(x), a): stored.get((key(x), a)) for x in launches for a in cc.SHARED_LIMITS}


@pytest.fixture(scope="session")
def recompiled(report) -> dict:
    """The TTT-Linear forward in bf16 (d = 32, b = 16) compiled now for sm_80 and sm_90,
    with the current kernels' cache keys."""
    pick = [
        x
        for x in report["launches"]
        if cc.describe(x)["kernel"] == "linear_fwd_kernel"
        and cc.describe(x)["dtype"] == "bf16"
        and x["constexprs"]["BD"] == 32
        and x["constexprs"]["BS"] == 16
        and not x["constexprs"]["HAS_ACC"]
    ]
    return cc.compile_launches(pick, [80, 90])


def test_the_recorder_sees_every_kernel_and_block_size(launches):
    """A launch the grid missed would go unchecked: every kernel, block size and dtype."""
    assert {cc.describe(x)["kernel"] for x in launches} == {k.split(":")[1] for k in cc.KERNELS}
    chain = [cc.describe(x) for x in launches if "decode" not in x["kernel"]]
    assert {v["BD"] for v in chain} == {32, 64, 128}  # d = 96 runs in a block of 128
    assert {v["BS"] for v in chain} == {16, 32, 64}
    assert {v["dtype"] for v in chain} == set(TORCH_DTYPES)
    assert {v["HAS_ACC"] for v in chain} == {True, False}


def test_every_launch_has_a_result_for_the_current_kernels(report, recompiled, results):
    assert report["kernels"] == recompiled["kernels"], f"the kernels changed: {REGENERATE}"
    missing = [k for k, r in results.items() if r is None]
    assert not missing, f"{len(missing)} launches not compiled, e.g. {missing[0]}: {REGENERATE}"


def test_every_launch_compiles(results):
    errors = {k: r["error"] for k, r in results.items() if r and "error" in r}
    assert not errors, f"{len(errors)} do not compile, e.g. {next(iter(errors.items()))}"
    for (k, arch), r in results.items():  # a cubin wherever the dispatcher may launch it
        fits = r["shared"] <= cc.SHARED_LIMITS[arch]
        assert r["full"] == (fits and arch in cc.FULL_ARCHS), (cc.describe(json.loads(k)), arch)


def test_targets_without_a_cubin_get_the_code_of_a_compiled_one(results):
    """sm_86 and sm_89 are compiled through the shared-memory allocation only (ptxas on the
    large fp32 kernels takes minutes): their TTGIR, and so their shared memory, must be
    that of sm_80."""
    for (k, arch), r in results.items():
        if arch not in cc.FULL_ARCHS:
            assert r["ttgir"] == results[(k, 80)]["ttgir"], (cc.describe(json.loads(k)), arch)
            assert r["shared"] == results[(k, 80)]["shared"], (cc.describe(json.loads(k)), arch)


def test_every_launch_fits_every_target(results):
    """Every launch fits the shared memory of every target, so the dispatcher needs no rule
    about it beyond the oldest architecture (``api.TRITON_MIN_CAPABILITY``)."""
    smallest = min(cc.SHARED_LIMITS.values())
    for (k, arch), r in results.items():
        if r is not None and "error" not in r:  # reported by the tests above
            assert r["shared"] <= smallest, (cc.describe(json.loads(k)), arch, r["shared"])
    oldest = min(cc.SHARED_LIMITS)
    assert (oldest // 10, oldest % 10) == api.TRITON_MIN_CAPABILITY


def test_low_precision_products_run_on_tensor_cores(results):
    """Every ``tl.dot`` of a bf16/fp16 kernel has a tensor-core layout and the SASS has HMMA
    (mma.sync) or, on sm_90, HGMMA (wgmma) instructions; fp32 products are exact fp32
    (``input_precision="ieee"``), which tensor cores do not do."""
    for (k, arch), r in results.items():
        v = cc.describe(json.loads(k))
        if "decode" in v["kernel"] or v["dtype"] == "fp32" or not r["full"]:
            continue
        assert r["dots"] > 0 and r["mma_dots"] == r["dots"], (v, arch, r)
        assert r["sass"].get("HMMA", 0) + r["sass"].get("HGMMA", 0) > 0, (v, arch, r)


def test_the_report_is_reproduced(report, recompiled):
    """A compile now gives the shared memory, registers, stack and products the file holds."""
    stored = {(key(report["launches"][r["launch"]]), r["arch"]): r for r in report["results"]}
    assert recompiled["results"]
    for r in recompiled["results"]:
        old = stored[(key(recompiled["launches"][r["launch"]]), r["arch"])]
        for field in ("shared", "ttgir", "full", "registers", "stack", "dots", "mma_dots", "sass"):
            assert r[field] == old[field], (field, r, old)


def test_allocation_only_tables_show_the_targets_compiled_and_no_cubin_figures():
    """``--full-archs`` with no target compiles through the shared-memory allocation only:
    the summary names only the targets in the results and leaves registers, stack and
    tensor-core counts empty instead of printing zeros."""
    launch = {
        "kernel": "ttt_video.kernels.triton.linear:linear_bwd_kernel",
        "args": ["*fp32:D"],
        "constexprs": {"BD": 128, "BS": 64, "HAS_ACC": False},
        "options": {"num_warps": 8},
    }
    results = [
        {"launch": 0, "arch": 80, "shared": 160 * 1024, "full": False},
        {"launch": 0, "arch": 86, "shared": 160 * 1024, "full": False},
    ]
    table = cc.summary_table({"launches": [launch], "results": results})
    header, _, row = table.splitlines()
    assert "sm_80 (163)" in header and "sm_86 (99)" in header and "sm_90" not in header
    assert row == "| linear_bwd | fp32 | 128 | 64 |  | 160 | **160** |  |  |  |"


def test_a_report_is_written_only_for_every_kernel(capsys):
    """``--kernels`` picks some launches; writing that as the report would drop the rest."""
    with pytest.raises(SystemExit):
        cc.main(["--kernels", "linear_bwd_kernel", "--write", "report.json"])
    assert "--write keeps the report of every kernel: drop --kernels" in capsys.readouterr().err


def test_peak_names_the_staged_buffers_and_their_source_lines():
    """``--peak`` (in a process without the interpreter): the largest TTT-Linear forward
    launch's buffers at the peak add up to the bytes it reports, stay inside the shared
    memory the allocator gave it, and each names a line of the kernel sources."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, "-m", cc.__name__, "--kernels", "linear_fwd_kernel", "--archs", "86"]
    done = subprocess.run([*cmd, "--peak"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    head, *rows = done.stdout.strip().splitlines()
    assert "'BD': 128" in head and "'BS': 64" in head and "'dtype': 'fp32'" in head
    total = int(re.search(r"sm_86: (\d+) KB staged at the peak", head)[1])
    sizes = [int(re.match(r"\s*(\d+) KB at\s+(\d+)\s+(\S+)$", row)[1]) for row in rows]
    assert rows and sum(sizes) == total <= 96  # the launch's shared memory (report above)
    sources = Path(cc.__file__).parent
    for row in rows:
        where = row.split()[-1]
        for frame in where.split("<"):
            name, line = frame.split(":")
            lines = (sources / name).read_text().splitlines()
            assert 1 <= int(line) <= len(lines), frame
