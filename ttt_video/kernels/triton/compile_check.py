"""Compile the Triton kernels ahead of time for named NVIDIA GPUs, without a GPU.

The interpreter, the only way the kernels run on a CPU, checks no shared-memory limit, no
register budget and no rule of the real compiler. This module checks them:

1. ``record_launches`` calls the public entry points (``ttt_linear``, ``ttt_mlp``, forward
   and backward, and ``ttt_decode``) on small CPU tensors under ``TRITON_INTERPRET=1`` with
   every kernel launch replaced by a recorder that runs nothing, so the launches are exactly
   those the dispatcher makes (block sizes, dtypes, ``HAS_ACC``, warps, stages), one per
   distinct Triton specialisation (what the launcher compiles a kernel for: argument types,
   pointer alignment, integers divisible by 16 or equal to 1, constexprs, options);
2. ``compile_launches`` compiles each for each target (``GPUTarget("cuda", arch, 32)``) in a
   process without the interpreter: for every target through the compiler's shared-memory
   allocation (the bytes a block needs), and, for the targets of ``FULL_ARCHS`` where the
   launch fits, on with the ``ptxas`` Triton ships to a cubin, whose registers per thread and
   stack frame (spills; ``cuobjdump -res-usage``), ``tl.dot`` ops with a tensor-core layout
   in the TTGIR and matrix instructions in the SASS are read.

It drives Triton 3.8's compiler passes (in 3.6 ``add_allocate_warp_groups`` takes one argument
less). A full run takes hours on two cores, so its results are kept in
``benchmarks/kernels_gpu_compile.json`` with each kernel's Triton cache key (a hash of its
source and of the functions it calls); ``tests/kernels/test_triton_compile.py`` checks them
against the kernels of the tree and recompiles a few. After changing a kernel::

    python -m ttt_video.kernels.triton.compile_check --write benchmarks/kernels_gpu_compile.json

(``--archs``, ``--full-archs``, ``--jobs``, ``--progress FILE`` to resume a stopped run;
Triton's on-disk cache skips the cubins of kernels that did not change; the
markdown tables of the results go to stdout, ``--read REPORT`` prints them again.)

While reworking a kernel for shared memory, compile only its launches and only through the
allocation (seconds each, no report written), and see which staged buffers make the peak of
its largest launch (``staged_at_peak``)::

    python -m ttt_video.kernels.triton.compile_check --kernels linear_bwd_kernel --full-archs
    python -m ttt_video.kernels.triton.compile_check --kernels mlp_bwd_kernel --archs 86 --peak
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton._C.libtriton import ir, nvidia, passes
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptx_version_from_options
from triton.compiler import ASTSource, make_backend
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import create_function_from_signature, native_specialize_impl

# Shared memory one block may use (bytes, the opt-in maximum): A100 163 KB, consumer Ampere
# and Ada 99 KB, H100 227 KB.
SHARED_LIMITS = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}
# sm_86 and sm_89 get the TTGIR of sm_80 (checked launch by launch), so they are compiled
# through the shared-memory allocation only; ptxas on the large fp32 kernels takes minutes.
FULL_ARCHS = (80, 90)
HEAD_DIMS = (32, 64, 96, 128)
MINI_BATCHES = (16, 32, 64)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
KERNELS = (
    "ttt_video.kernels.triton.linear:linear_fwd_kernel",
    "ttt_video.kernels.triton.linear:linear_bwd_kernel",
    "ttt_video.kernels.triton.mlp:mlp_fwd_kernel",
    "ttt_video.kernels.triton.mlp:mlp_bwd_kernel",
    "ttt_video.kernels.triton.decode:linear_decode_kernel",
    "ttt_video.kernels.triton.decode:mlp_decode_kernel",
)
LAUNCH_OPTIONS = ("num_warps", "num_stages", "maxnreg")  # what a launch passes besides arguments
# SASS matrix instructions: HMMA (mma.sync, Ampere and later), HGMMA (wgmma, Hopper).
_MMA_SASS = re.compile(r"\b(HMMA|HGMMA)\.")


def record_launches(
    head_dims=HEAD_DIMS, mini_batches=MINI_BATCHES, dtypes=DTYPES, kinds=("linear", "mlp")
) -> list[dict]:
    """Every distinct kernel launch of the public entry points over the grid (interpreter only).

    For each kind, ``d``, ``b`` and dtype: causal and non-causal forward + backward from a
    fresh state and from one with an accumulated gradient (``HAS_ACC``: position 5 when
    causal, a differentiable zero ``Gacc`` when not), and ``ttt_decode`` at positions 0, 1,
    2 and ``b - 1`` (the commit) without gradient and at ``b - 1`` with one.

    Returns JSON-ready launches ``{"kernel": "module:name", "args": [spec, ...], "constexprs":
    {...}, "options": {...}}``, one per specialisation, ``args`` the runtime arguments' Triton
    specialisations in order (``"*bf16:D"`` a 16-byte aligned pointer, ``"i32:D"`` an int
    divisible by 16, ``"i32:"`` another, ``"constexpr:1"`` the int 1, ``"i32"`` an int the
    kernel does not specialise on, ``"fp32"`` a float).
    """
    if not isinstance(_load(KERNELS[0]), InterpretedFunction):
        raise RuntimeError("record_launches needs TRITON_INTERPRET=1 before triton is imported")
    backend = make_backend(GPUTarget("cuda", 80, 32))  # specialisation is the same for all
    seen: dict[str, dict] = {}

    def recorder(fn, *args, grid, warmup, **kwargs):
        options = {k: kwargs.pop(k) for k in LAUNCH_OPTIONS if k in kwargs}
        signature = inspect.signature(fn.fn)
        bound = signature.bind(*args, **kwargs).arguments
        constexprs = {n: v for n, v in bound.items() if _is_constexpr(signature.parameters[n])}
        launch = {
            "kernel": f"{fn.fn.__module__}:{fn.fn.__name__}",
            "args": [
                _specialization(backend, fn, n, v) for n, v in bound.items() if n not in constexprs
            ],
            "constexprs": constexprs,
            "options": options,
        }
        seen.setdefault(json.dumps(launch, sort_keys=True), launch)

    original = InterpretedFunction.run
    InterpretedFunction.run = recorder
    try:
        for kind in kinds:
            for d in head_dims:
                for b in mini_batches:
                    for dtype in dtypes:
                        _drive(kind, d, b, dtype)
    finally:
        InterpretedFunction.run = original
    return list(seen.values())


def _specialization(backend, fn: InterpretedFunction, name: str, value) -> str:
    """What Triton's launcher specialises a runtime argument on, honouring the kernel's
    ``do_not_specialize``, as ``type`` or ``type:attribute``."""
    specialize = name not in (fn.kwargs.get("do_not_specialize") or ())
    align = name not in (fn.kwargs.get("do_not_specialize_on_alignment") or ())
    kind, attr = native_specialize_impl(backend, value, False, specialize, align)
    return kind if attr is None else f"{kind}:{attr}"


def _example(spec: str):
    """A CPU value that Triton specialises as ``spec`` (the inverse of ``_specialization``)."""
    kind, _, attr = spec.partition(":")
    if kind.startswith("*"):
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}.get(
            kind[1:], torch.int32
        )
        t = torch.empty(32, dtype=dtype)  # CPU allocations are 64-byte aligned
        return t if attr != "" else t[1:]
    if kind == "constexpr":
        return int(attr)
    if kind in ("i32", "i64"):
        return 16 if attr == "D" else 3
    if kind == "u1":
        return True
    return 1e-6


def _is_constexpr(param: inspect.Parameter) -> bool:
    # a string under ``from __future__ import annotations``
    return param.annotation is tl.constexpr or "constexpr" in str(param.annotation)


def _load(qualname: str):
    module, name = qualname.split(":")
    return getattr(importlib.import_module(module), name)


def _drive(kind: str, d: int, b: int, dtype: torch.dtype) -> None:
    """Forward, backward and decode calls of one (kind, d, b, dtype); outputs are garbage
    (the recorder runs no kernel), only the launches matter."""
    from ttt_video.kernels import TTTState, initial_state, ttt_decode
    from ttt_video.testing import random_ttt_inputs, run_ttt

    inp = random_ttt_inputs(kind, B=1, T=b + 3, H=2, d=d, b=b, dtype=dtype).requires_grad_()
    fresh = initial_state(tuple(w.detach() for w in inp.weights), inp.biases, 1)

    def with_acc(position: int) -> TTTState:
        acc = tuple(torch.zeros_like(t).requires_grad_() for t in fresh.weights)
        accb = tuple(torch.zeros_like(t).requires_grad_() for t in fresh.biases)
        return TTTState(fresh.weights, fresh.biases, acc, accb, position)

    for causal, state in ((True, None), (True, with_acc(5)), (False, None), (False, with_acc(0))):
        o = run_ttt(kind, inp, b, impl="triton", causal=causal, initial_state=state)
        o.float().sum().backward()
    x = random_ttt_inputs(kind, B=1, T=1, H=2, d=d, b=b, dtype=dtype)
    args = (x.q, x.k, x.v, x.lam, x.tau, x.ln_weight, x.ln_bias)
    for p in (0, 1, 2, b - 1):  # every class Triton specialises an int on: 16 | p, 1, other
        with torch.no_grad():
            ttt_decode(*args, with_acc(p), mini_batch_size=b, impl="triton")
    x.requires_grad_()
    o = ttt_decode(*args, with_acc(b - 1), mini_batch_size=b, impl="triton")[0]
    o.float().sum().backward()


def describe(launch: dict) -> dict:
    """The launch's kernel name, input dtype, constexprs and options, for reports."""
    return {
        "kernel": launch["kernel"].split(":")[1],
        "dtype": launch["args"][0].split(":")[0].lstrip("*"),  # q's: every kernel's first
        **launch["constexprs"],
        **launch["options"],
    }


def fingerprints() -> dict[str, str]:
    """Each kernel's Triton cache key: a hash of its source and of every function it calls
    (no interpreter in this process)."""
    return {name: _load(name).cache_key for name in KERNELS}


def compile_launch(launch: dict, arch: int, full: bool = True) -> dict:
    """Compile one recorded launch for ``sm_{arch}`` (no interpreter in this process).

    Always: the TTGIR and its shared-memory allocation (``{"shared", "ttgir"}``: bytes of
    dynamic shared memory per block and a hash of the TTGIR with the target's name left
    out). With ``full``, and only where the launch fits the target's shared memory (the
    dispatcher never runs it elsewhere), on through LLVM and ptxas to a cubin, adding
    ``"registers"`` per thread, ``"stack"`` (bytes of stack frame per thread: spills),
    ``"dots"`` (``tl.dot`` ops in the TTGIR), ``"mma_dots"`` (those with a tensor-core
    layout) and ``"sass"`` (the SASS matrix instructions by opcode). ``"full"`` says whether
    a cubin was made. A compile error is returned as ``{"error": message}``.
    """
    src, target, backend, options = _source(launch, arch)
    try:
        module, ttgir = _allocated_module(src, target, backend, options)
        result = {"shared": module.get_int_attr("ttg.shared"), "ttgir": ttgir, "full": False}
        if not full or result["shared"] > SHARED_LIMITS[arch]:
            return result
        kernel = triton.compile(src, target=target, options=options.__dict__)
    except Exception as e:  # a compile error is a result to report
        return {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"}
    dots = re.findall(r"= (?:tt\.dot|ttng\.warp_group_dot) .*", kernel.asm["ttgir"])
    mma = [line for line in dots if re.search(r"-> tensor<[^>]*#mma", line)]
    usage = _cuobjdump("-res-usage", kernel.asm["cubin"])
    if kernel.metadata.shared != result["shared"]:
        raise RuntimeError(f"shared memory {kernel.metadata.shared} != {result['shared']}")
    return {
        **result,
        "full": True,
        "registers": int(re.search(r"REG:(\d+)", usage)[1]),
        "stack": int(re.search(r"STACK:(\d+)", usage)[1]),
        "dots": len(dots),
        "mma_dots": len(mma),
        "sass": dict(Counter(_MMA_SASS.findall(_cuobjdump("-sass", kernel.asm["cubin"])))),
    }


def _source(launch: dict, arch: int):
    """``(ASTSource, target, backend, options)`` of a recorded launch for ``sm_{arch}``: the
    binder and the argument packing of ``JITFunction.run``, for the target's backend."""
    fn = _load(launch["kernel"])
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    kwargs = {**launch["constexprs"], **launch["options"]}
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*map(_example, launch["args"]), **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(
        backend, kwargs, bound, specialization, options
    )
    return ASTSource(fn, signature, constexprs, attrs), target, backend, options


def _allocated_module(src: ASTSource, target: GPUTarget, backend, options):
    """The stages of ``triton.compile`` up to the TTGIR, then the first passes of its LLVM
    stage, through the shared-memory allocation (as the NVIDIA backend orders them in
    Triton 3.8), in seconds where the whole LLVM stage of the large fp32 kernels takes
    minutes: ``(module, hash of the TTGIR before the allocation)``, the module with its
    ``ttg.shared`` bytes and each buffer's ``allocation.offset`` set. ``compile_launch``
    checks the bytes against the cubin's wherever it makes one."""
    context = ir.context()
    ir.load_dialects(context)
    backend.load_dialects(context)
    codegen = backend.get_codegen_implementation(options)
    module = src.make_ir(target, options, codegen, backend.get_module_map(), context)
    stages: dict = {}
    backend.add_stages(stages, options, src.language)
    metadata = {"target": target, **options.__dict__}
    for ext, stage in stages.items():
        module = stage(module, metadata)
        if ext == "ttgir":
            break
    ttgir = _ttgir_hash(str(module))
    pm = ir.pass_manager(module.context)
    passes.ttgpuir.add_combine_tensor_select_and_if(pm)
    passes.ttgpuir.add_allocate_warp_groups(pm, False)
    passes.convert.add_scf_to_cf(pm)
    passes.gluon.add_inliner(pm)
    ptx_version = get_ptx_version_from_options(options, target.arch)
    nvidia.passes.ttgpuir.add_allocate_shared_memory_nv(pm, target.arch, ptx_version)
    pm.run(module, "allocate_shared")
    return module, ttgir


def staged_at_peak(launch: dict, arch: int) -> tuple[int, list[tuple[int, int, str]]]:
    """For reworking a kernel's shared memory: the buffers staged for products (``local_alloc``)
    that are live together where most bytes are, ``(bytes, [(offset, bytes, where)])``,
    ``where`` the source lines that made the buffer (``file:line``, callers after ``<``).

    Read from the allocated TTGIR in program order: a buffer lives from its ``local_alloc``
    to its last use (through ``memdesc`` views). A diagnostic next to the allocator's own
    analysis (the scratch of layout conversions and reductions is not counted): it shows
    which blocks to load again, park or read in chunks (kernels/README.md section 12)."""
    module, _ = _allocated_module(*_source(launch, arch))
    text = str(module)
    locs = dict(re.findall(r"^(#loc\d*) = (loc\(.*\))$", text, re.M))

    def where(ref: str) -> str:
        loc = locs.get(ref, "")
        if m := re.match(r'loc\("[^"]*?([\w.]+\.py)":(\d+):\d+\)', loc):
            return f"{m[1]}:{m[2]}"
        if m := re.match(r"loc\(callsite\((#loc\d*) at (#loc\d*)\)\)", loc):
            return f"{where(m[1])}<{where(m[2])}"
        m = re.match(r'loc\("[^"]*"\((#loc\d*)\)\)', loc)  # a named location
        return where(m[1]) if m else "?"

    ops = [line for line in text.splitlines() if not line.startswith("#loc")]
    alias: dict[str, str] = {}
    live: dict[str, list] = {}  # value -> [first op, last op, offset, bytes, where]
    for i, op in enumerate(ops):
        if m := re.match(r"\s*(%[\w#]+) = ttg\.memdesc_\w+ (%[\w#]+)", op):
            alias[m[1]] = alias.get(m[2], m[2])
        m = re.match(r"\s*(%[\w#]+) = ttg\.local_alloc .*allocation\.offset = (\d+)", op)
        shape = re.search(r"!ttg\.memdesc<([\dx]+)x(f32|bf16|f16)", op)
        if m and shape:
            size = math.prod(map(int, shape[1].split("x"))) * (4 if shape[2] == "f32" else 2)
            loc = re.search(r"loc\((#loc\d*)\)$", op)
            live[m[1]] = [i, i, int(m[2]), size, where(loc[1]) if loc else "?"]
            continue
        for value in re.findall(r"%[\w#]+", op.split("=", 1)[-1]):
            if (root := alias.get(value, value)) in live:
                live[root][1] = i
    peak, at = max(
        (sum(b[3] for b in live.values() if b[0] <= i <= b[1]), i) for i in range(len(ops))
    )
    staged = sorted((b[2], b[3], b[4]) for b in live.values() if b[0] <= at <= b[1])
    return peak, staged


def _ttgir_hash(ttgir: str) -> str:
    """A hash of the TTGIR with the target's name and the folders of source locations left
    out: equal for two targets when the compiler made the same code for both, and the same
    in any checkout or installation."""
    text = re.sub(r"cuda:\d+", "cuda", ttgir)
    text = re.sub(r'loc\("[^"]*/([^"/]*)"', r'loc("\1"', text)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cuobjdump(flag: str, cubin: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        cmd = [triton.knobs.nvidia.cuobjdump.path, flag, f.name]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _compile_task(task: tuple[dict, int, bool]) -> dict:
    launch, arch, full = task
    t0 = time.perf_counter()
    result = compile_launch(launch, arch, full)
    seconds = round(time.perf_counter() - t0, 1)
    made = "cubin" if result.get("full") else "shared memory only"
    print(f"{describe(launch)} sm_{arch}: {made}, {seconds} s", file=sys.stderr, flush=True)
    return {**result, "seconds": seconds}


def compile_launches(
    launches: list[dict], archs, jobs: int = 1, full_archs=None, progress: Path | None = None
) -> dict:
    """Compile every launch for every arch in a child process without the interpreter.

    ``full_archs`` (default: all) go on to a cubin where the launch fits (``compile_launch``).
    ``progress``: a JSON-lines file to which each result is appended as it comes and from
    which a rerun takes the results of unchanged kernels (a long run can be stopped and
    resumed). Returns ``{"triton": version, "kernels": fingerprints(), "launches": launches,
    "results": [{"launch": index, "arch", **compile_launch(...), "seconds"}, ...]}``.
    """
    full_archs = list(archs if full_archs is None else full_archs)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "launches.json"), Path(tmp, "results.json")
        spec = {
            "launches": launches,
            "archs": list(archs),
            "full": full_archs,
            "jobs": jobs,
            "progress": None if progress is None else str(progress),
        }
        src.write_text(json.dumps(spec))
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        cmd = [sys.executable, "-m", __spec__.name, "--worker", str(src), str(out)]
        proc = subprocess.run(cmd, env=env)  # its progress and errors go to our stderr
        if proc.returncode:
            raise RuntimeError(f"compile worker failed (exit {proc.returncode}; see above)")
        return json.loads(out.read_text())


def _worker(src: Path, out: Path) -> None:
    spec = json.loads(src.read_text())
    keys = fingerprints()

    def task_key(launch: dict, arch: int, full: bool) -> str:
        return json.dumps([launch, arch, full, keys[launch["kernel"]]], sort_keys=True)

    tasks = [
        (launch, arch, arch in spec["full"])
        for launch in spec["launches"]
        for arch in spec["archs"]
    ]
    done: dict[str, dict] = {}
    progress = spec["progress"] and Path(spec["progress"])
    if progress and progress.exists():
        for line in progress.read_text().splitlines():
            record = json.loads(line)
            done[record["task"]] = record["result"]
    todo = [t for t in tasks if task_key(*t) not in done]
    print(f"{len(tasks) - len(todo)} of {len(tasks)} done before", file=sys.stderr, flush=True)
    with ProcessPoolExecutor(max(1, spec["jobs"])) as pool:
        for task, result in zip(todo, pool.map(_compile_task, todo)):
            done[task_key(*task)] = result
            if progress:
                with progress.open("a") as f:
                    f.write(json.dumps({"task": task_key(*task), "result": result}) + "\n")
    index = {json.dumps(launch, sort_keys=True): i for i, launch in enumerate(spec["launches"])}
    rows = [
        {"launch": index[json.dumps(t[0], sort_keys=True)], "arch": t[1], **done[task_key(*t)]}
        for t in tasks
    ]
    report = {
        "triton": triton.__version__,
        "kernels": keys,
        "launches": spec["launches"],
        "results": rows,
    }
    out.write_text(json.dumps(report))


def _one_record_a_line(report: dict) -> str:
    """The report as JSON with one launch or result a line (small diffs when regenerated)."""
    parts = []
    for key, value in report.items():
        if isinstance(value, list):
            body = ",\n".join(json.dumps(v, sort_keys=True) for v in value)
            parts.append(f'"{key}": [\n{body}\n]')
        else:
            parts.append(f'"{key}": {json.dumps(value, sort_keys=True)}')
    return "{\n" + ",\n".join(parts) + "\n}\n"


def markdown_table(report: dict) -> str:
    """One row per (kernel variant, arch): shared KB vs the limit, registers, stack, MMA."""
    rows = [
        "| kernel | dtype | BD | BS | BM | acc | warps | sm | shared KB (limit) | regs/thread "
        "| stack B | tl.dot on tensor cores | SASS MMA |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        v = describe(report["launches"][r["launch"]])
        cells = [v["kernel"].removesuffix("_kernel"), v["dtype"]]
        cells += [v.get(k, "") for k in ("BD", "BS", "BM")]
        cells += [{True: "y", False: "n"}.get(v.get("HAS_ACC"), ""), v.get("num_warps", 4)]
        cells.append(r["arch"])
        if "error" in r:
            cells += [f"does not compile: {r['error']}", "", "", "", ""]
        else:
            limit = SHARED_LIMITS[r["arch"]]
            over = " **over**" if r["shared"] > limit else ""
            cells.append(f"{r['shared'] / 1024:.1f} ({limit // 1024}){over}")
            if r["full"]:
                mma = ", ".join(f"{n} {op}" for op, n in sorted(r["sass"].items())) or "none"
                cells += [r["registers"], r["stack"], f"{r['mma_dots']}/{r['dots']}", mma]
            else:
                cells += ["", "", "", "no cubin"]
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows)


def summary_table(report: dict) -> str:
    """One row per (kernel, dtype, BD, BS, BM), the most over ``HAS_ACC``: shared memory per
    target (over its limit in bold), registers and stack (the most over the targets compiled
    to a cubin), and the ``tl.dot`` products on tensor cores (the fewest over those)."""
    rows: dict[tuple, dict] = {}
    for r in report["results"]:
        v = describe(report["launches"][r["launch"]])
        key = (v["kernel"].removesuffix("_kernel"), v["dtype"], v["BD"], v.get("BS", ""))
        row = rows.setdefault(key + (v.get("BM", ""),), {"shared": {}, "regs": 0, "stack": 0})
        if "error" in r:
            row["error"] = r["error"]
            continue
        row["shared"][r["arch"]] = max(row["shared"].get(r["arch"], 0), r["shared"])
        if not r["full"]:
            continue
        row["regs"] = max(row["regs"], r["registers"])
        row["stack"] = max(row["stack"], r["stack"])
        tc = (r["mma_dots"], r["dots"])
        row["tc"] = min(row.get("tc", tc), tc)
    archs = sorted({r["arch"] for r in report["results"]})
    head = " | ".join(f"sm_{a} ({SHARED_LIMITS[a] // 1024})" for a in archs)
    lines = [
        f"| kernel | dtype | BD | BS | BM | shared KB: {head} | regs | stack B | dots on TC |",
        "|---|---|---|---|---|" + "---|" * len(archs) + "---|---|---|",
    ]
    for key, row in sorted(rows.items(), key=lambda kv: tuple(map(str, kv[0]))):
        if "error" in row:
            lines.append(f"| {' | '.join(map(str, key))} | does not compile: {row['error']} |")
            continue
        shared = [
            f"**{row['shared'][a] / 1024:.0f}**"
            if row["shared"][a] > SHARED_LIMITS[a]
            else f"{row['shared'][a] / 1024:.0f}"
            for a in archs
        ]
        tc = row.get("tc")  # (tensor-core dots, dots); None: no cubin, nothing was read
        usage = ["", "", ""] if tc is None else [str(row["regs"]), str(row["stack"])]
        if tc is not None:
            usage.append(f"{tc[0]}/{tc[1]}" if tc[1] else "")
        cells = [*map(str, key), *shared, *usage]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_peaks(launches: list[dict], arch: int) -> None:
    """``staged_at_peak`` of each kernel's launch with the largest blocks (``BD``, ``BS``,
    fp32, ``HAS_ACC``), printed."""
    if isinstance(_load(KERNELS[0]), InterpretedFunction):
        raise SystemExit("--peak compiles in this process: unset TRITON_INTERPRET")

    def size(x: dict) -> tuple:
        c = x["constexprs"]
        return c.get("BD", 0), c.get("BS", 0), describe(x)["dtype"] == "fp32", c.get("HAS_ACC")

    for name in dict.fromkeys(describe(x)["kernel"] for x in launches):
        launch = max((x for x in launches if describe(x)["kernel"] == name), key=size)
        total, staged = staged_at_peak(launch, arch)
        print(f"{describe(launch)} sm_{arch}: {total / 1024:.0f} KB staged at the peak")
        for offset, nbytes, where in staged:
            print(f"  {nbytes / 1024:5.0f} KB at {offset:6d}  {where}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", type=int, nargs="+", default=sorted(SHARED_LIMITS))
    parser.add_argument(
        "--full-archs",
        type=int,
        nargs="*",
        default=FULL_ARCHS,
        help="compiled to a cubin (registers, spills, SASS) where a launch fits; the others "
        "through the shared-memory allocation (none given: every target through it only)",
    )
    parser.add_argument(
        "--kernels",
        nargs="+",
        choices=[k.split(":")[1] for k in KERNELS],
        help="compile only the launches of these kernels (default: all)",
    )
    parser.add_argument(
        "--peak",
        action="store_true",
        help="for each kernel (see --kernels), its launch with the largest blocks on the first "
        "of --archs: the buffers staged for products where most are live, with source lines",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--progress",
        type=Path,
        help="JSON lines: each result appended as it comes; a rerun resumes from it",
    )
    parser.add_argument("--write", type=Path, help="the JSON report to write")
    parser.add_argument("--read", type=Path, help="print the tables of a JSON report")
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.kernels and args.write:
        parser.error("--write keeps the report of every kernel: drop --kernels")
    if args.worker:
        return _worker(*args.worker)
    if args.record:  # in a child with the interpreter on
        args.record.write_text(json.dumps(record_launches()))
        return None
    if args.read:
        report = json.loads(args.read.read_text())
        print(summary_table(report), "\n", markdown_table(report), sep="\n")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "launches.json")
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        subprocess.run(
            [sys.executable, "-m", __spec__.name, "--record", str(path)], env=env, check=True
        )
        launches = json.loads(path.read_text())
    if args.kernels:
        launches = [x for x in launches if describe(x)["kernel"] in args.kernels]
    if args.peak:
        return print_peaks(launches, args.archs[0])
    t0 = time.perf_counter()
    report = compile_launches(launches, args.archs, args.jobs, args.full_archs, args.progress)
    if args.write:
        args.write.write_text(_one_record_a_line(report))
    print(summary_table(report), "\n", markdown_table(report), sep="\n")
    n = len(report["results"])
    print(f"\n{n} compiles in {time.perf_counter() - t0:.0f} s ({args.jobs} jobs)")
    return None


if __name__ == "__main__":
    main()
