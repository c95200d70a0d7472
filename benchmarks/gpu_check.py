"""One GPU check: are the Triton kernels right and fast on this GPU, and do models train?

    python benchmarks/gpu_check.py --out gpu_check_out          # on one CUDA GPU, <= 8 min
    python benchmarks/gpu_check.py --dry-run --out gpu_check_dry  # CPU: interpreter, toy shapes

Writes ``report.md`` and ``report.json`` to ``--out``. Each check runs on its own: one that
raises is reported with its error and the others still run; each is stopped when its share
of ``--budget-s`` is spent (the cases left are listed as skipped; ``check_harness.py``).
Exit status 1 when a check fails or raises.

- ``matmul_peak``: the best bf16 and fp32 matmul rate against the datasheet peak
  (``ttt_video.train.peak_flops``), the reference for the fractions below.
- ``kernels_vs_dual``: ``impl="triton"`` against the dual form on the same device: outputs,
  final states and every input's gradient (random cotangents on the output and every
  final-state tensor), TTT-Linear and TTT-MLP, fp32 and bf16, causal and not, packed
  sequences (``cu_seqlens``), up to T = 32K, at d = 64, b = 16, then at the largest blocks
  (d = 128, b = 64: the most shared memory, fp32 products read in chunks). fp32: relative
  RMS error under ``2e-5 * sqrt(max(1, T / 1024))`` (rounding that walks with the number of
  mini-batches).
  bf16: against the fp32 dual form on the unrounded inputs, the Triton error is at most
  twice the bf16 dual form's, plus 1e-4 (the rule of ``tests/kernels/test_triton.py``).
- ``decode_vs_torch``: Triton decode steps against the PyTorch step from a state
  mid-mini-batch, through commits (outputs and final state; the same criteria).
- ``window_attention``: causal sliding-window attention (``layers.attention.window_attention``,
  blocks of queries in one attention call) against one attention call over the whole stream
  under a dense band mask, with and without a tail of earlier keys, and a one-token call:
  output and the gradients of ``q, k, v``, by the same criteria (the dense call in the role
  of the dual form).
- ``speed``: tokens/s of forward and forward+backward, Triton against the dual form, a
  ``torch.compile``d dual form and flash-linear-attention's ``chunk_ttt_linear`` when
  installed; Triton on 8 sequences at once (as many programs as a large GPU has SMs);
  decode tokens/s; the achieved matmul FLOP/s as a fraction of the datasheet peak.
- ``fla_semantics``: what ``fla.ops.ttt.chunk_ttt_linear`` computes against ``ttt_linear``
  (``benchmarks/fla_ttt.py``: the mapping of the arguments and the differences).
- ``train_lm`` / ``train_video``: one AdamW step of the 125m LM and of a video model under
  bf16 autocast, ``impl="triton"`` against ``impl="dual"``: the loss before and after the
  step and the gradient norm agree to 1e-2 (relative).

``--dry-run`` sets ``TRITON_INTERPRET=1`` before Triton is imported, runs every check at
toy shapes on CPU tensors and ``torch.compile`` with the ``eager`` backend: it proves the
script runs end to end (``tests/test_gpu_check.py``); its timings measure nothing. Letters: B batch, T tokens, H heads, d head dim, b mini-batch size.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

if "--dry-run" in sys.argv:  # before the first import of triton (read when @triton.jit runs)
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from check_harness import Check, Deadline, markdown, run_cases, run_checks, verdict  # noqa: E402
from fla_ttt import FLA_DIFFERENCES, fla_call, fla_semantics, import_fla  # noqa: E402

from ttt_video.io_utils import write_atomic, write_json  # noqa: E402
from ttt_video.kernels import ttt_decode  # noqa: E402
from ttt_video.kernels.api import triton_unsupported  # noqa: E402
from ttt_video.kernels.state import TTTState  # noqa: E402
from ttt_video.layers.attention import window_attention  # noqa: E402
from ttt_video.models.registry import config_from_name, from_name  # noqa: E402
from ttt_video.testing import TTTInputs, error_stats, random_ttt_inputs, run_ttt  # noqa: E402
from ttt_video.train.peak_flops import datasheet_peak_flops, measure_peak_flops  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Plan:
    """Shapes and lengths of one run (GPU or dry run)."""

    device: str
    dry_run: bool
    H: int = 4
    d: int = 64
    b: int = 16
    causal_T: tuple[int, ...] = (1000, 32768)
    noncausal_T: tuple[int, ...] = (1024, 32768)
    packed: tuple[int, ...] = (37, 4101, 4053)  # each ends 5 tokens into a mini-batch
    # (d, b) of the last kernel cases: the largest blocks, where each kernel needs the most
    # shared memory and fp32 products over the head dim are read in chunks
    large_blocks: tuple[int, int] = (128, 64)
    decode_from: int = 5  # position in the mini-batch of the first decoded token
    decode_steps: int = 40
    window: int = 512  # W of the window-attention cases, and their call length
    window_T: int = 4096
    speed_T: tuple[int, ...] = (2048, 8192, 32768)
    speed_H: int = 16  # model width H * d = 1024
    decode_B: int = 16
    wide_B: int = 8  # sequences of the wide speed case: 8 x 16 heads = 128 programs
    matmul_n: int = 8192
    lm: tuple[str, dict] = ("ttt_linear_125m", {})
    lm_tokens: tuple[int, int] = (4, 2048)
    video: tuple[str, dict] = ("video_ttt_linear_base", {})
    video_frames: tuple[int, int] = (4, 64)
    compile_backend: str = "inductor"
    min_calls: int = 3  # timed calls per measurement
    warmup: bool = True  # one untimed call first (compilation, caches)
    budget_s: float = 420.0
    capability: tuple[int, int] | None = None  # the GPU's (None in a dry run)


def make_plan(dry_run: bool, budget_s: float) -> Plan:
    """The GPU plan, or toy shapes on the CPU for ``--dry-run``."""
    if not dry_run:
        return Plan("cuda", False, budget_s=budget_s, capability=torch.cuda.get_device_capability())
    tiny = {"num_layers": 1, "width": 32, "num_heads": 2, "ffn_width": 64}
    return Plan(
        "cpu",
        True,
        H=2,
        d=16,
        causal_T=(20,),
        noncausal_T=(16,),
        packed=(5, 21),
        large_blocks=(32, 32),
        decode_from=13,
        decode_steps=4,
        window=8,
        window_T=20,
        speed_T=(16,),
        speed_H=2,
        decode_B=2,
        wide_B=2,
        matmul_n=1024,
        lm=("ttt_linear_debug", tiny),
        lm_tokens=(1, 32),
        video=("video_ttt_linear_debug", {"num_layers": 1}),
        video_frames=(1, 3),
        compile_backend="eager",
        min_calls=1,
        warmup=False,
        budget_s=math.inf,
    )


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], plan: Plan, min_s: float = 0.2, max_calls: int = 50):
    """Median milliseconds per call of ``fn`` (after a warm-up call when ``plan.warmup``): at
    least ``plan.min_calls`` calls and ``min_s`` seconds, at most ``max_calls``."""
    device = plan.device
    if plan.warmup:
        fn()
        sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < plan.min_calls or (
        time.perf_counter() - start < min_s and len(times) < max_calls
    ):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def state_tensors(st: TTTState) -> dict[str, torch.Tensor]:
    """The final state's tensors by name (``final weights[0]``, ...)."""
    fields = ("weights", "biases", "grad_weights", "grad_biases")
    return {f"final {f}[{i}]": t for f in fields for i, t in enumerate(getattr(st, f))}


def input_names(kind: str) -> list[str]:
    n = 1 if kind == "linear" else 2
    return ["q", "k", "v", "lam", "tau", *(f"W{i + 1}" for i in range(n))] + [
        *(f"b{i + 1}" for i in range(n)),
        "ln_weight",
        "ln_bias",
    ]


def run_with_grads(kind, inp, b, impl, causal, cu_seqlens, seed=0) -> dict[str, torch.Tensor]:
    """Output, final state and the gradient of every input under fixed random cotangents."""
    o, st = run_ttt(
        kind, inp, b, impl=impl, causal=causal, cu_seqlens=cu_seqlens, output_final_state=True
    )
    outs = {"o": o, **state_tensors(st)}
    g = torch.Generator().manual_seed(seed)
    cots = [torch.randn(t.shape, generator=g).to(t.device, t.dtype) for t in outs.values()]
    grads = torch.autograd.grad(list(outs.values()), inp.tensors(), cots, allow_unused=True)
    res = {n: t.detach() for n, t in outs.items()}
    res.update({f"grad {n}": t for n, t in zip(input_names(kind), grads) if t is not None})
    return res


def compare(ref: dict, out: dict) -> dict[str, float]:
    """Relative RMS error of every tensor of ``out`` against ``ref`` (inf when missing)."""
    return {n: error_stats(r, out[n])[1] if n in out else math.inf for n, r in ref.items()}


def judge(dtype: str, run: Callable[[str, torch.dtype], dict], T: int) -> dict:
    """Triton against the dual form; ``run(impl, dtype)`` gives named tensors.

    fp32: the worst relative RMS error is under ``2e-5 * sqrt(max(1, T / 1024))``. bf16:
    against the fp32 dual form on the same (unrounded) inputs, each tensor's Triton error is
    at most twice the bf16 dual form's plus 1e-4.
    """
    ref = run("dual", torch.float32)
    if dtype == "fp32":
        errors = compare(ref, run("triton", torch.float32))
        limit = 2e-5 * math.sqrt(max(1.0, T / 1024))
        worst = max(errors, key=errors.get)
        return {
            "worst": worst,
            "rel_rms": errors[worst],
            "limit": limit,
            "pass": errors[worst] <= limit,
        }
    e_dual = compare(ref, run("dual", torch.bfloat16))
    e_tri = compare(ref, run("triton", torch.bfloat16))
    ratio = {n: e_tri[n] / (2 * e_dual[n] + 1e-4) for n in ref}
    worst = max(ratio, key=ratio.get)
    return {
        "worst": worst,
        "triton": e_tri[worst],
        "dual": e_dual[worst],
        "pass": ratio[worst] <= 1.0,
    }


def kernel_case(
    plan: Plan, kind: str, dtype: str, causal: bool, T: int, packed: bool, blocks=None
) -> dict:
    """One row of ``kernels_vs_dual`` (criteria: :func:`judge`); ``blocks``: ``(d, b)``, the
    plan's by default."""
    d, b = blocks or (plan.d, plan.b)
    B, cu = 2, None
    if packed:
        B, T = 1, sum(plan.packed)
        cu = torch.tensor([0, *torch.tensor(plan.packed).cumsum(0).tolist()], device=plan.device)
    base = random_ttt_inputs(kind, B, T, plan.H, d, b, seed=T + len(kind))

    def run(impl: str, dt: torch.dtype) -> dict:
        return run_with_grads(kind, base.to(plan.device, dt), b, impl, causal, cu)

    row = {"kind": kind, "dtype": dtype, "d": d, "b": b, "causal": causal, "T": T, "packed": packed}
    return {**row, **judge(dtype, run, T)}


def refused(plan: Plan, chk: Check, kind, dtype, causal, T, packed, blocks=None) -> bool:
    """Whether the dispatcher refuses this case's launch on this GPU (noted in ``chk``)."""
    d, b = blocks or (plan.d, plan.b)
    m = 4 * d if kind == "mlp" else None
    reason = triton_unsupported(DTYPES[dtype], d, b, m, plan.capability)
    if reason:
        chk.notes.append(f"refused by the dispatcher: {(kind, dtype, d, b)}: {reason}")
    return reason is not None


def check_kernels(plan: Plan, deadline: Deadline, chk: Check) -> None:
    cases = [
        (kind, dtype, causal, T, False)
        for T_list, causal in ((plan.causal_T, True), (plan.noncausal_T, False))
        for T in T_list
        for kind in ("linear", "mlp")
        for dtype in DTYPES
    ]
    cases += [(kind, dtype, True, 0, True) for kind in ("linear", "mlp") for dtype in DTYPES]
    # the short ones first, then the largest blocks, then the long T (skipped first when time
    # runs out): every variant before the longest sequences
    cases.sort(key=lambda c: c[3])
    T, large = plan.causal_T[0], plan.large_blocks
    longest_T = max(plan.causal_T + plan.noncausal_T)
    longest = [c for c in cases if c[3] == longest_T]
    cases = [c for c in cases if c not in longest]
    cases += [
        (kind, dtype, True, T, False, large) for kind in ("linear", "mlp") for dtype in DTYPES
    ]
    cases = [c for c in cases + longest if not refused(plan, chk, *c)]
    run_cases(chk, deadline, cases, partial(kernel_case, plan), partial(cleanup, plan))
    chk.status = verdict(chk)


def decode_case(plan: Plan, kind: str, dtype: str) -> dict:
    """Triton decode steps against the PyTorch step, from a state ``decode_from`` tokens
    into a mini-batch, through a commit (criteria: :func:`judge`)."""
    p, n = plan.decode_from, plan.decode_steps
    base = random_ttt_inputs(kind, 2, p + n, plan.H, plan.d, plan.b, seed=7)

    def run(impl: str, dt: torch.dtype) -> dict[str, torch.Tensor]:
        inp = base.to(plan.device, dt)
        with torch.no_grad():
            pre = TTTInputs(
                *(getattr(inp, f)[:, :p] for f in "q k v lam".split()),
                inp.tau,
                inp.weights,
                inp.biases,
                inp.ln_weight,
                inp.ln_bias,
            )
            _, st = run_ttt(kind, pre, plan.b, impl="dual", output_final_state=True)
            outs = []
            for t in range(p, p + n):
                x = [getattr(inp, f)[:, t : t + 1] for f in "q k v lam".split()]
                o, st = ttt_decode(
                    *x, inp.tau, inp.ln_weight, inp.ln_bias, st, mini_batch_size=plan.b, impl=impl
                )
                outs.append(o)
        return {"o": torch.cat(outs, 1), **state_tensors(st)}

    return {"kind": kind, "dtype": dtype, "from": p, "steps": n, **judge(dtype, run, n)}


def check_decode(plan: Plan, deadline: Deadline, chk: Check) -> None:
    cases = [(kind, dtype) for kind in ("linear", "mlp") for dtype in DTYPES]
    run_cases(chk, deadline, cases, partial(decode_case, plan), partial(cleanup, plan))
    chk.status = verdict(chk)


def window_case(plan: Plan, dtype: str, T: int, S: int) -> dict:
    """Causal ``window_attention`` over ``T`` tokens after a tail of ``S`` keys against one
    attention call over all ``S + T`` under a dense band mask: the output and the gradients
    of ``q, k, v`` under a fixed random cotangent (criteria: :func:`judge`, whose ``"dual"``
    is the dense call here and ``"triton"`` the blocked one; the row names them so)."""
    B, H, h, W = 2, plan.H, plan.d, plan.window
    g = torch.Generator().manual_seed(T + S)
    base = [torch.randn(B, H, S + T, h, generator=g) for _ in range(3)]

    def run(impl: str, dt: torch.dtype) -> dict[str, torch.Tensor]:
        q, k, v = (t.to(plan.device, dt).requires_grad_() for t in base)
        if impl == "dual":
            pos = torch.arange(S + T, device=plan.device)
            band = (pos[None] <= pos[:, None]) & (pos[None] > pos[:, None] - W)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=band)[:, :, S:]
        else:
            tail = (k[:, :, :S], v[:, :, :S]) if S else None
            o, _ = window_attention(q[:, :, S:], k[:, :, S:], v[:, :, S:], tail, 0, W, W, True)
        cot = torch.randn(o.shape, generator=torch.Generator().manual_seed(1))
        grads = torch.autograd.grad(o, (q, k, v), cot.to(o.device, o.dtype))
        return {"o": o.detach(), **{f"grad {n}": t for n, t in zip("qkv", grads)}}

    names = {"triton": "blocked", "dual": "dense"}
    result = {names.get(key, key): value for key, value in judge(dtype, run, T).items()}
    return {"dtype": dtype, "W": W, "S": S, "T": T, **result}


def check_window(plan: Plan, deadline: Deadline, chk: Check) -> None:
    W, T = plan.window, plan.window_T
    shapes = ((T, 0), (T, W // 2), (1, W))  # from the start, after a short tail, one token
    cases = [(dtype, t, s) for dtype in DTYPES for t, s in shapes]
    run_cases(chk, deadline, cases, partial(window_case, plan), partial(cleanup, plan))
    chk.status = verdict(chk)


def matmul_flops_per_token(kind: str, d: int, b: int) -> float:
    """Matmul FLOPs of one token of one head in the forward (dual form, ``m = 4d``).

    TTT-Linear per mini-batch: ``K W``, ``Q W``, the commit ``K^T G`` (``2 b d^2`` each),
    ``Q K^T`` and ``(M o Q K^T) G`` (``2 b^2 d`` each). TTT-MLP: seven ``b x d x m``
    products (two layers of ``K W``, ``Q W``, the commit, and ``G2 W2^T``) and the two
    layers' ``b x b`` products. Forward+backward counts 3x (the model-FLOPs convention).
    """
    if kind == "linear":
        return 6 * d * d + 4 * b * d
    m = 4 * d
    return 14 * d * m + 4 * b * d + 4 * b * m


def speed_case(
    plan: Plan, kind: str, T: int, impl: str, B: int = 1, peak: float | None = None
) -> dict:
    """Forward and forward+backward tokens/s of one implementation (bf16 inputs; ``B``
    sequences of ``speed_H`` heads, tokens of all sequences counted)."""
    base = random_ttt_inputs(kind, B, T, plan.speed_H, plan.d, plan.b, seed=1)
    inp = base.to(plan.device, torch.bfloat16)
    if impl == "fla":
        call = partial(fla_call, import_fla(), inp, plan.b)
    elif impl == "compiled dual":
        compiled = torch.compile(run_ttt, backend=plan.compile_backend, dynamic=False)
        call = partial(compiled, kind, inp, plan.b, impl="dual")
    else:
        call = partial(run_ttt, kind, inp, plan.b, impl=impl)

    def forward():
        with torch.no_grad():
            call()

    def forward_backward():
        o = call()
        o = o[0] if isinstance(o, tuple) else o
        torch.autograd.grad(o, inp.tensors()[:3], torch.ones_like(o))

    ms_f, ms_fb = time_ms(forward, plan), time_ms(forward_backward, plan)
    tok_f, tok_fb = B * T * 1e3 / ms_f, B * T * 1e3 / ms_fb
    flops = matmul_flops_per_token(kind, plan.d, plan.b) * plan.speed_H
    row = {"kind": kind, "B": B, "T": T, "impl": impl, "fwd_tok_s": tok_f, "fwd_bwd_tok_s": tok_fb}
    if peak:
        row["fwd_peak_frac"] = flops * tok_f / peak
        row["fwd_bwd_peak_frac"] = 3 * flops * tok_fb / peak
    return row


def decode_speed_case(plan: Plan, kind: str, impl: str, peak: float | None) -> dict:
    """Tokens/s of decode steps on ``decode_B`` streams (no gradient, bf16 inputs)."""
    B, H, d, b = plan.decode_B, plan.speed_H, plan.d, plan.b
    inp = random_ttt_inputs(kind, B, b, H, d, b, seed=2).to(plan.device, torch.bfloat16)
    with torch.no_grad():
        _, st = run_ttt(kind, inp, b, impl="dual", output_final_state=True)
        x = [getattr(inp, f)[:, :1].detach() for f in "q k v lam".split()]
        rest = (inp.tau.detach(), inp.ln_weight.detach(), inp.ln_bias.detach(), st)
        step = partial(ttt_decode, *x, *rest, mini_batch_size=b, impl=impl)
        ms = time_ms(step, plan)
    row = {"kind": kind, "impl": f"decode {impl}", "streams": B, "tok_s": B * 1e3 / ms}
    if peak:  # the scan's count without its b x b products
        row["peak_frac"] = matmul_flops_per_token(kind, d, 0) * H * row["tok_s"] / peak
    return row


def check_speed(plan: Plan, deadline: Deadline, chk: Check) -> None:
    peak = device_peak(plan, "bf16")
    fla = import_fla() is not None and plan.device == "cuda"
    # decode first (quick), then the sequences, shortest first; last: compiling unrolls the
    # walk over mini-batches, so only the shortest T
    cases = [("decode", kind, impl) for kind in ("linear", "mlp") for impl in ("triton", "dual")]
    cases += [
        ("sequence", kind, T, impl)
        for T in plan.speed_T
        for kind in ("linear", "mlp")
        for impl in ["triton", "dual"] + (["fla"] if fla and kind == "linear" else [])
    ]
    # as many programs (sequences x heads) as a large GPU has multiprocessors
    wide_T = plan.speed_T[len(plan.speed_T) // 2]
    cases += [("wide", kind, wide_T, "triton", plan.wide_B) for kind in ("linear", "mlp")]
    cases += [("sequence", kind, plan.speed_T[0], "compiled dual") for kind in ("linear", "mlp")]
    cases_of = {"sequence": speed_case, "wide": speed_case, "decode": decode_speed_case}
    run_cases(
        chk,
        deadline,
        cases,
        lambda name, *case: cases_of[name](plan, *case, peak=peak),
        partial(cleanup, plan),
    )
    chk.status = "ok" if chk.rows and all("error" not in r for r in chk.rows) else "fail"
    chk.notes.append(
        f"bf16 inputs, B=1 (wide: B={plan.wide_B}), H={plan.speed_H}, d={plan.d}, b={plan.b}; "
        f"decode: {plan.decode_B} streams, one token each; peak fractions against "
        f"{'the bf16 datasheet peak' if peak else 'no known peak (not measured)'}; fwd+bwd "
        f"counts 3x the forward's matmul FLOPs; torch.compile backend: {plan.compile_backend} "
        f"(dynamic=False), at T={plan.speed_T[0]} only"
        + ("" if fla else "; flash-linear-attention: not installed or no CUDA")
    )


def device_peak(plan: Plan, dtype: str) -> float | None:
    if plan.device != "cuda":
        return None
    found = datasheet_peak_flops(torch.cuda.get_device_name(), dtype)
    return None if found is None else found[1]


def check_matmul(plan: Plan, deadline: Deadline, chk: Check) -> None:
    dev = torch.device(plan.device)
    for dtype in ("bf16", "fp32"):
        flops = measure_peak_flops(dev, DTYPES[dtype], plan.matmul_n)
        peak = device_peak(plan, dtype)
        chk.rows.append(
            {
                "dtype": dtype,
                "n": plan.matmul_n,
                "measured_tflops": flops / 1e12,
                "datasheet_tflops": peak and peak / 1e12,
                "fraction": peak and flops / peak,
            }
        )


def check_fla(plan: Plan, deadline: Deadline, chk: Check) -> None:
    """flash-linear-attention's TTT-Linear against ours (``fla_ttt.fla_semantics``)."""
    chunk_ttt_linear = import_fla()
    if chunk_ttt_linear is None or plan.device != "cuda":
        chk.status = "skipped"
        chk.notes.append(
            "flash-linear-attention is not installed (pip install flash-linear-"
            "attention) or there is no CUDA device"
        )
        return
    base = random_ttt_inputs("linear", 2, 4096, plan.H, plan.d, plan.b, seed=3)
    base.lam = base.lam[:, :1].expand_as(base.lam).contiguous()  # one rate per stream and head
    inp = base.to(plan.device, torch.float32)
    errors = fla_semantics(chunk_ttt_linear, inp, plan.b)
    chk.rows = [{"quantity": n, "rel_rms": e, "pass": e <= 1e-3} for n, e in errors.items()]
    chk.status = verdict(chk)
    chk.notes.append(FLA_DIFFERENCES)


def train_step(plan: Plan, preset: str, overrides: dict, impl: str, batch) -> dict[str, float]:
    """Loss before and after one AdamW step (bf16 autocast) and the gradient norm."""
    torch.manual_seed(0)
    model = from_name(preset, **overrides, impl=impl).to(plan.device)
    video = preset.startswith("video_")

    def loss_of() -> torch.Tensor:
        with torch.autocast(plan.device, dtype=torch.bfloat16):
            if video:
                x = batch.float() / 255
                return F.mse_loss(model(x[:, :-1]).next_frames.float(), x[:, 1:])
            logits, _ = model(batch[:, :-1])
            return F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = loss_of()
    before.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    opt.step()
    with torch.no_grad():
        after = loss_of()
    return {"loss_before": before.item(), "loss_after": after.item(), "grad_norm": norm.item()}


def check_train(plan: Plan, deadline: Deadline, chk: Check, video: bool) -> None:
    preset, overrides = plan.video if video else plan.lm
    g = torch.Generator().manual_seed(0)
    cfg = config_from_name(preset, **overrides)
    if video:
        B, Fr = plan.video_frames
        shape = (B, Fr, cfg.channels, cfg.image_size, cfg.image_size)
        batch = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    else:
        B, T = plan.lm_tokens
        batch = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=g)
    batch = batch.to(plan.device)
    res = {impl: train_step(plan, preset, overrides, impl, batch) for impl in ("dual", "triton")}
    for key in res["dual"]:
        ref, out = res["dual"][key], res["triton"][key]
        rel = abs(out - ref) / max(abs(ref), 1e-12)
        chk.rows.append(
            {
                "model": preset,
                "quantity": key,
                "dual": ref,
                "triton": out,
                "rel_diff": rel,
                "pass": rel <= 1e-2,
            }
        )
    chk.status = verdict(chk)


CHECKS: dict[str, tuple[float, Callable]] = {  # name: (share of the budget, function)
    "matmul_peak": (0.02, check_matmul),
    "kernels_vs_dual": (0.32, check_kernels),
    "decode_vs_torch": (0.06, check_decode),
    "window_attention": (0.03, check_window),
    "speed": (0.33, check_speed),
    "fla_semantics": (0.04, check_fla),
    "train_lm": (0.1, partial(check_train, video=False)),
    "train_video": (0.1, partial(check_train, video=True)),
}


def environment(plan: Plan) -> dict:
    """Versions, device and machine load, for the report header."""
    import triton

    env = {
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "dry_run": plan.dry_run,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if plan.device == "cuda":
        env["device"] = torch.cuda.get_device_name()
        major, minor = torch.cuda.get_device_capability()
        env["capability"] = f"sm_{major}{minor}"
    else:
        env["device"] = f"CPU ({os.cpu_count()} cores), Triton interpreter"
    return env


DRY_RUN_TITLE = "# GPU check: DRY RUN (CPU, Triton interpreter, toy shapes)\n\n" + (
    "**Not a GPU result.** No GPU was available where this ran: the kernels ran in the "
    "Triton interpreter on CPU tensors at toy shapes, `torch.compile` used the eager "
    "backend, and the timings measure nothing. It shows the script runs end to end (on a "
    "GPU: `python benchmarks/gpu_check.py --out DIR`, under 8 minutes on one H100-class GPU; "
    "the first GPU run's report is `benchmarks/gpu_check/report.md`)."
)


def cleanup(plan: Plan) -> None:
    """Free what one case or check left in the GPU's memory cache."""
    if plan.device == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for report.md and report.json")
    p.add_argument("--dry-run", action="store_true", help="CPU, Triton interpreter, toy shapes")
    p.add_argument(
        "--budget-s", type=float, default=420.0, help="time for all checks (not in a dry run)"
    )
    p.add_argument("--only", nargs="+", choices=list(CHECKS), help="run these checks only")
    args = p.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run for the CPU smoke run")
    plan = make_plan(args.dry_run, args.budget_s)
    checks = {n: c for n, c in CHECKS.items() if not args.only or n in args.only}
    env = environment(plan)
    results = run_checks(checks, plan, plan.budget_s, partial(cleanup, plan))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_json(out / "report.json", {"environment": env, "checks": [c.__dict__ for c in results]})
    title = DRY_RUN_TITLE if plan.dry_run else f"# GPU check: {env['device']}"
    write_atomic(out / "report.md", markdown(title, env, results, command))
    print(f"[gpu_check] wrote {out / 'report.md'} and {out / 'report.json'}")
    return 0 if all(c.status in ("pass", "ok", "skipped") for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
