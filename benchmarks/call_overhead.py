"""Per-call cost of the TTT models against attention on one CPU thread, before and after a
change of the code, in one run:

    nice -n 10 python benchmarks/call_overhead.py > call_overhead_out.md   # ~12 minutes
    python benchmarks/call_overhead.py --no-compile                        # eager only, ~2 min
    python benchmarks/call_overhead.py --base 4f7ae3c                      # "before" = a commit
    python benchmarks/call_overhead.py --only-lm125 --base 4f7ae3c         # 125m width, ~6 min
    python benchmarks/call_overhead.py --only-lm125 --lm125-compiled --base 4f7ae3c   # + compiled
    python benchmarks/call_overhead.py --only-chain --base 4f7ae3c         # the chain alone
    python benchmarks/call_overhead.py --flops                             # FLOPs by part, ~1 min

- Training: the Moving-MNIST-style step of the quickstart recipe (``configs/video/quickstart
  .yaml``: ``video_{mixer}_small`` with ``motion_input``, B = 8, F0 = 10 context frames in one
  call, then R = 10 frames fed back one call each with the gradient through them, the
  rollout-training loss with ``context_weight`` 3, AdamW at lr 3e-3) on random frames, for
  TTT-Linear, TTT-MLP and attention; steps/s eager and with ``torch.compile`` (the model's
  ``compile()``: inductor; the first steps, which compile, are timed apart).
- Decode: ms/token of greedy decoding at stream position 1024 (B = 1; the far position is
  reached as in ``lm_decode.py``: a TTT model prefills 64 tokens and moves its position, the
  attention baseline gets a KV cache of 1024 random keys and values) for ``ttt_linear_debug``
  and ``attention_debug``, and the same two at the 125m width (D = 768, 12 heads, FFN 2048,
  2 blocks).
- 125m-width LM (``--lm125``, or ``--only-lm125``): ``{ttt_linear,ttt_mlp}_debug`` at D = 768,
  12 heads, FFN 2048, 2 blocks (M backbone, byte vocabulary), B = 2, T = 2048, fp32, two
  threads, eager: tokens/s of a training step (forward, cross-entropy, backward, AdamW) and
  of a prefill (forward without gradients). With ``--lm125-compiled`` the "after" side also
  runs them through the model's ``compile()`` (after one warm-up call each, which compiles),
  compared with the "before" side's eager points.
- The dual form's state chain alone (``--chain`` or ``--only-chain``), one thread: the
  forward and the backward of ``scan_forward`` / ``scan_backward`` at the quickstart's shapes
  (R = B*H = 32 streams, b = 16, d = 32, TTT-MLP hidden 128), for N = 1 mini-batch (a
  fed-back frame) and N = 10 (the context call), eager and compiled as inside a compiled
  model (``run_chain``): microseconds per call, and the matmul FLOPs it runs
  (``FlopCounterMode``) per second, as a share of the machine's fp32 matmul rate.
- The machine's fp32 matmul rate (2048^3, one thread), measured in the same run.
- ``--flops`` (the working tree only, nothing timed): the matmul FLOPs of one eager training
  step of the quickstart recipe per mixer, split into the model outside the TTT chain
  (forward and backward) and the chain's forward, its backward's re-run of the forward from
  the kept states, and its backward proper.

"before" is ``git archive BASE ttt_video`` extracted into a temporary folder, "after" the
``ttt_video`` of this repository's working tree; each side runs in subprocesses
(``--worker``) with ``PYTHONPATH`` pointing at its code, so the measurements below use only
what both sides have. Times are process CPU time (one thread: the wall time of an idle
machine, less what other jobs take on a shared one). Load on a shared machine changes over
minutes, so the two sides alternate: the eager and decode points run ``--repeats`` times,
before, after, before, after (the best run of each point is kept), then each compiled point
once per side, model by model. How long compiling takes depends on inductor's on-disk cache
(a rerun of the same graphs is fast).

Letters: B batch, F0 context frames, R fed-back frames, D width. Not collected by pytest.
Results: Markdown tables on stdout, and every number as JSON with ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MIXERS = ("ttt_linear", "ttt_mlp", "attention")
WIDTH_125M = {"width": 768, "num_heads": 12, "ffn_width": 2048}
DECODE = {
    "ttt_linear_debug": {},
    "attention_debug": {},
    "ttt_linear_debug @ 125m width": WIDTH_125M,
    "attention_debug @ 125m width": WIDTH_125M,
}
LM125_MIXERS = ("ttt_linear", "ttt_mlp")
CHAIN_POINTS = [
    f"{kind}:{N}:{mode}"
    for kind in ("linear", "mlp")
    for N in (1, 10)
    for mode in ("eager", "compiled")
]
RESULT = "RESULT "
"""Prefix of the worker's JSON line on stdout."""


def recipe_model(mixer: str) -> torch.nn.Module:
    """The quickstart recipe's model for ``mixer`` (module docstring), seeded."""
    from ttt_video.models import from_name

    torch.manual_seed(0)
    return from_name(f"video_{mixer}_small", motion_input=True)


def recipe_loss(model: torch.nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """The quickstart recipe's loss on ``clip: [B, F0 + R, 1, 64, 64]`` (module docstring)."""
    F0, R, w = 10, 10, 3.0 * 9  # context_weight * (F0 - 1), as VideoPredictModule.loss
    out = model(clip[:, :F0])
    rolled, _ = model.feed_back(out.next_frames[:, -1], R, out.state)
    fed = torch.nn.functional.mse_loss(rolled, clip[:, F0:])
    context = torch.nn.functional.mse_loss(out.next_frames[:, :-1], clip[:, 1:F0])
    return (w * context + R * fed) / (w + R)


def training_step(
    mixer: str, compiled: bool, steps: int, clock=time.process_time
) -> dict[str, float]:
    """Steps/s of the quickstart recipe's step (module docstring), the seconds of the first
    (warm-up, compiling) steps, and the matmul FLOPs of a step (``FlopCounterMode``, counted
    on an eager step before compiling). ``clock``: process CPU time (one thread), or wall
    time (``time.perf_counter``) where several threads run."""
    from torch.utils.flop_counter import FlopCounterMode

    model = recipe_model(mixer)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    clip = torch.rand(8, 20, 1, 64, 64)

    def step() -> None:
        loss = recipe_loss(model, clip)
        opt.zero_grad()
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    if compiled:
        model.compile()
    start = time.perf_counter()
    for _ in range(2):
        step()
    warmup = time.perf_counter() - start
    start = clock()
    for _ in range(steps):
        step()
    rate = steps / (clock() - start)
    return {"steps_per_s": rate, "warmup_s": warmup, "flops": counter.get_total_flops()}


def step_flops_by_part(mixer: str) -> dict[str, float]:
    """Matmul FLOPs of one eager training step (``training_step``'s) by part: ``model
    forward`` / ``model backward`` (outside the chain), ``chain forward``, ``chain re-run``
    (the forward ``scan_backward`` repeats from the kept states) and ``chain backward``
    (``kernels/README.md`` section 4)."""
    import traceback

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    formulas = FlopCounterMode().flop_registry
    parts: dict[str, float] = {}

    class ByPart(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            formula = formulas.get(func._overloadpacket)
            if formula is not None:
                names = {frame.name for frame in traceback.extract_stack()}
                if "scan_backward" in names:
                    rerun = names & {"_step", "build"} and "_step_backward" not in names
                    part = "chain re-run" if rerun else "chain backward"
                elif "scan_forward" in names:
                    part = "chain forward"
                else:
                    part = "model forward" if torch.is_grad_enabled() else "model backward"
                flops = formula(*args, **(kwargs or {}), out_val=out)
                parts[part] = parts.get(part, 0.0) + flops
            return out

    model = recipe_model(mixer)
    clip = torch.rand(8, 20, 1, 64, 64)
    with ByPart():
        recipe_loss(model, clip).backward()
    return parts


def flops_report() -> str:
    """``--flops``: a Markdown table of ``step_flops_by_part`` for every mixer, in GFLOP."""
    columns = ["model forward", "model backward", "chain forward", "chain re-run"]
    columns.append("chain backward")
    lines = _table(
        "Matmul GFLOP of one quickstart training step (`FlopCounterMode` formulas), by part:",
        ["model", *columns, "total"],
    )
    for mixer in MIXERS:
        parts = step_flops_by_part(mixer)
        cells = [f"{parts.get(c, 0.0) / 1e9:.2f}" for c in columns]
        lines.append(f"| {mixer} | {' | '.join(cells)} | {sum(parts.values()) / 1e9:.2f} |")
    return "\n".join(lines)


def decode_ms(overrides: dict, name: str, steps: int) -> float:
    """Median ms per greedy decoded token at stream position 1024 (module docstring)."""
    from lm_decode import far_state  # benchmarks/, this script's folder

    from ttt_video.models import from_name

    torch.manual_seed(0)
    model = from_name(name.split(" ")[0], **overrides).eval()
    times = []
    with torch.no_grad():
        state = far_state(model, 1024, 64)
        token = torch.zeros(1, 1, dtype=torch.long)
        for i in range(steps + 5):
            start = time.process_time()
            logits, state = model(token, state)
            token = logits[:, -1].argmax(-1, keepdim=True)
            if i >= 5:
                times.append(time.process_time() - start)
    return 1e3 * statistics.median(times)


def lm_125m_width(point: str, steps: int) -> dict[str, float]:
    """Tokens/s of a training step and of a prefill of the 125m-width LM (module docstring),
    two threads, wall time (the points alternate between the sides, as the others do);
    ``point``: a mixer, or ``mixer:compiled``."""
    from ttt_video.models import from_name

    torch.set_num_threads(2)
    torch.manual_seed(0)
    mixer, _, mode = point.partition(":")
    model = from_name(f"{mixer}_debug", **WIDTH_125M)
    if mode == "compiled":
        from ttt_video.models.compiling import compile_model  # the "after" side only

        if not compile_model(model):
            raise SystemExit(
                "--lm125-compiled: torch.compile cannot run here (the warning says why)"
            )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 256, (2, 2048))

    def train() -> None:
        logits, _ = model(ids)
        targets = ids[:, 1:].flatten()
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def prefill() -> None:
        with torch.no_grad():
            model(ids)

    out = {}
    for name, fn in (("train_tokens_per_s", train), ("prefill_tokens_per_s", prefill)):
        fn()  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        out[name] = ids.numel() * steps / (time.perf_counter() - start)
    torch.set_num_threads(1)
    return out


def chain_cost(kind: str, N: int, compiled: bool, calls: int = 40) -> dict[str, float]:
    """Microseconds per forward and backward call of the dual form's chain and the matmul
    FLOPs of each (module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ttt_video.kernels import dual

    if hasattr(dual, "run_chain"):
        run_chain = dual.run_chain
    else:  # up to 5b697ce: in ops.py, and a compiled model ran chains over 4 mini-batches eager
        from ttt_video.kernels.ops import run_chain

        compiled = compiled and N <= dual.COMPILED_CHAIN_MAX_MINIBATCHES
    R, b, d, m = 32, 16, 32, 128
    g = torch.Generator().manual_seed(0)
    q, k, tgt = (torch.randn(R, N, b, d, generator=g) for _ in range(3))
    lam = torch.rand(R, N, b, generator=g) * 0.1
    tau = 1.0 / torch.arange(1, b + 1.0)
    lnw, lnb = torch.ones(R, 1, d), torch.zeros(R, 1, d)
    widths = [d, d] if kind == "linear" else [d, m, d]
    weights = [torch.randn(R, i, o, generator=g) * i**-0.5 for i, o in zip(widths, widths[1:])]
    biases = [torch.zeros(R, o) for o in widths[1:]]
    state = weights + biases + [torch.zeros_like(t) for t in weights + biases]
    L = len(weights)
    fwd_args = (q, k, tgt, lam, tau, lnw, lnb, state, True, True, 16, False)
    out = dual.scan_forward(*fwd_args)
    dzbar, dfinal = torch.randn_like(out[0]), [torch.randn_like(t) for t in out[1 : 1 + 4 * L]]
    bwd_args = (*fwd_args[:8], out[1 + 4 * L :], dzbar, dfinal, *fwd_args[8:])
    result = {}
    for name, fn, args in (
        ("fwd", dual.scan_forward, fwd_args),
        ("bwd", dual.scan_backward, bwd_args),
    ):
        with FlopCounterMode(display=False) as counter:
            fn(*args)
        for _ in range(3):  # warm-up (compiling)
            run_chain(fn, compiled, *args)
        start = time.process_time()
        for _ in range(calls):
            run_chain(fn, compiled, *args)
        result[f"{name}_us"] = 1e6 * (time.process_time() - start) / calls
        result[f"{name}_flops"] = counter.get_total_flops()
    return result


def worker(args: argparse.Namespace) -> None:
    """Measure the ``--train`` points and, with ``--decode``, the decode points, with the
    ``ttt_video`` on ``PYTHONPATH``; print one JSON line."""
    torch.set_num_threads(1)
    out = {"train": {}, "decode": {}, "lm125": {}, "chain": {}}
    for point in args.train:
        mixer, mode = point.split(":")
        out["train"][f"{mixer} {mode}"] = training_step(mixer, mode == "compiled", args.steps)
    for name, overrides in DECODE.items() if args.decode else ():
        out["decode"][name] = decode_ms(overrides, name, args.decode_steps)
    for mixer in args.lm125_points:
        out["lm125"][mixer] = lm_125m_width(mixer, args.lm125_steps)
    for point in args.chain_points:
        kind, N, mode = point.split(":")
        out["chain"][point] = chain_cost(kind, int(N), mode == "compiled")
    print(RESULT + json.dumps(out), flush=True)


def run_side(
    code_root: Path, points: list[str], decode: bool, args: argparse.Namespace, lm125=(), chain=()
) -> dict:
    """Run a worker with ``PYTHONPATH=code_root``; its results."""
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "2" if lm125 else "1"}
    argv = ["--worker", "--steps", str(args.steps), "--decode_steps", str(args.decode_steps)]
    argv += ["--train", *points] if points else []
    argv += ["--decode"] if decode else []
    argv += ["--lm125_points", *lm125, "--lm125_steps", str(args.lm125_steps)] if lm125 else []
    argv += ["--chain_points", *chain] if chain else []
    proc = subprocess.run(
        [sys.executable, __file__, *argv],
        env=env,
        cwd=tempfile.gettempdir(),  # not the repository: its ttt_video would shadow PYTHONPATH
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith(RESULT))
    result = json.loads(line.removeprefix(RESULT))
    print(f"{code_root}: {result}", file=sys.stderr, flush=True)
    return result


def measure(sides: dict[str, Path], args: argparse.Namespace) -> dict[str, dict]:
    """Every point on both sides, interleaved so that load changes on a shared machine hit
    both alike: the eager and decode points ``--repeats`` times (the best run is kept), then
    each compiled point once per side, one model after the other."""
    results = {side: {"train": {}, "decode": {}, "lm125": {}, "chain": {}} for side in sides}

    def keep(side: str, new: dict) -> None:
        for key, value in new["train"].items():
            old = results[side]["train"].get(key)
            if old is None or value["steps_per_s"] > old["steps_per_s"]:
                results[side]["train"][key] = value
        for key, value in new["decode"].items():
            results[side]["decode"][key] = min(value, results[side]["decode"].get(key, value))
        for mixer, rates in new.get("lm125", {}).items():
            old = results[side]["lm125"].setdefault(mixer, rates)
            for name, rate in rates.items():
                old[name] = max(old[name], rate)
        for point, cost in new.get("chain", {}).items():
            old = results[side]["chain"].setdefault(point, cost)
            for name in ("fwd_us", "bwd_us"):
                old[name] = min(old[name], cost[name])

    only = args.only_lm125 or args.only_chain
    eager = [f"{m}:eager" for m in args.mixers]
    for _ in range(args.repeats if not only else 0):
        for side, root in sides.items():
            keep(side, run_side(root, eager, True, args))
    for mixer in args.mixers if args.compile and not only else ():
        for side, root in sides.items():
            keep(side, run_side(root, [f"{mixer}:compiled"], False, args))
    compiled = [f"{m}:compiled" for m in LM125_MIXERS] if args.lm125_compiled else []
    for _ in range(args.repeats if args.lm125 or args.only_lm125 else 0):
        for side, root in sides.items():
            points = LM125_MIXERS + tuple(compiled if side == "after" else ())
            keep(side, run_side(root, [], False, args, lm125=points))
    for _ in range(args.repeats if args.chain or args.only_chain else 0):
        for side, root in sides.items():
            keep(side, run_side(root, [], False, args, chain=CHAIN_POINTS))
    return results


def _table(caption: str, columns: list[str]) -> list[str]:
    """A caption and a Markdown table header."""
    return ["", caption, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def report(
    before: dict, after: dict, gflops: float, loads: tuple[float, float], args: argparse.Namespace
) -> str:
    """The Markdown tables (the sections that have points)."""
    lines = [
        f"torch {torch.__version__}, one thread; fp32 2048^3 matmul: {gflops:.0f} GFLOP/s; "
        f"load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end; "
        f"before = `{args.base}`, after = the working tree; eager, decode and 125m width: "
        f"best of {args.repeats} interleaved runs.",
    ]
    if after["train"]:
        lines += _table(
            "Training steps/s (quickstart recipe; higher is better), the seconds of the two "
            "first steps (compiling, for compiled), the matmul FLOPs of a step and their rate "
            "as a share of the 2048^3 matmul's:",
            ["model", "mode", "before steps/s", "after steps/s", "after / before",
             "after, x attention", "first 2 steps before / after (s)", "GFLOP / step",
             "share of matmul rate, after"],
        )  # fmt: skip
    for key, new in after["train"].items():
        old = before["train"][key]
        mode = key.split(" ")[1]
        ref = after["train"].get(f"attention {mode}", new)["steps_per_s"]
        lines.append(
            f"| {key.split(' ')[0]} | {mode} | {old['steps_per_s']:.2f} | "
            f"{new['steps_per_s']:.2f} | {new['steps_per_s'] / old['steps_per_s']:.2f} | "
            f"{new['steps_per_s'] / ref:.2f} | {old['warmup_s']:.0f} / {new['warmup_s']:.0f} | "
            f"{new['flops'] / 1e9:.2f} | {new['flops'] / 1e9 * new['steps_per_s'] / gflops:.0%} |"
        )
    if after["decode"]:
        lines += _table(
            "Decode at position 1024, ms/token (median; lower is better):",
            ["model", "before", "after", "after / before"],
        )
    for name, new in after["decode"].items():
        old = before["decode"][name]
        lines.append(f"| {name} | {old:.3f} | {new:.3f} | {new / old:.2f} |")
    if after["lm125"]:
        lines += _table(
            "125m-width LM (D 768, 12 heads, 2 blocks, B = 2, T = 2048, two threads; before "
            "eager), tokens/s (goal: prefill >= 1.3x and training >= 1.15x before):",
            ["model", "train before", "train after", "after / before", "prefill before",
             "prefill after", "after / before"],
        )  # fmt: skip
    for mixer, new in after["lm125"].items():
        old = before["lm125"][mixer.partition(":")[0]]
        tr, pf = "train_tokens_per_s", "prefill_tokens_per_s"
        lines.append(
            f"| {mixer} | {old[tr]:,.0f} | {new[tr]:,.0f} | {new[tr] / old[tr]:.2f} | "
            f"{old[pf]:,.0f} | {new[pf]:,.0f} | {new[pf] / old[pf]:.2f} |"
        )
    if after["chain"]:
        lines += _table(
            "The dual form's chain alone (R = 32, b = 16, d = 32, MLP hidden 128; one thread): "
            "microseconds per call, and its matmul FLOPs per second (forward + backward) as a "
            "share of the 2048^3 matmul's rate:",
            ["chain", "N", "mode", "fwd us before / after", "bwd us before / after",
             "speed-up", "share of matmul rate before / after"],
        )  # fmt: skip
    for point, new in after["chain"].items():
        old = before["chain"][point]
        kind, N, mode = point.split(":")
        t_old, t_new = old["fwd_us"] + old["bwd_us"], new["fwd_us"] + new["bwd_us"]
        flops = new["fwd_flops"] + new["bwd_flops"]
        share = [flops / t / 1e3 / gflops for t in (t_old, t_new)]  # GFLOP/s / GFLOP/s
        lines.append(
            f"| {kind} | {N} | {mode} | {old['fwd_us']:,.0f} / {new['fwd_us']:,.0f} | "
            f"{old['bwd_us']:,.0f} / {new['bwd_us']:,.0f} | {t_old / t_new:.2f} | "
            f"{share[0]:.0%} / {share[1]:.0%} |"
        )
    lines += ["", "Goals (after): TTT against attention in the same mode / at the same width:", ""]
    for key, new in after["train"].items():
        mixer, mode = key.split(" ")
        goal = {"ttt_linear": 1.0, "ttt_mlp": 0.75}.get(mixer)
        ref = after["train"].get(f"attention {mode}")
        if goal is not None and ref is not None:
            ratio = new["steps_per_s"] / ref["steps_per_s"]
            met = "met" if ratio >= goal else "not met"
            lines.append(f"- {key} steps/s: {ratio:.2f}x attention (goal >= {goal}: {met})")
    for name, new in after["decode"].items():
        ref = after["decode"].get(name.replace("ttt_linear", "attention"))
        if name.startswith("ttt_linear") and ref is not None:
            met = "met" if new <= ref else "not met"
            lines.append(
                f"- {name} decode: {new / ref:.2f}x attention's ms/token (goal <= 1: {met})"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--base", default="HEAD", help="the 'before' commit (default HEAD)")
    p.add_argument("--mixers", nargs="+", default=list(MIXERS), choices=MIXERS)
    p.add_argument("--steps", type=int, default=10, help="timed training steps per point")
    p.add_argument("--decode_steps", type=int, default=100, help="timed decode steps per point")
    p.add_argument("--repeats", type=int, default=2, help="runs of the eager points (best kept)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="eager only")
    p.add_argument("--lm125", action="store_true", help="also the 125m-width LM points")
    p.add_argument("--only-lm125", action="store_true", help="only the 125m-width LM points")
    p.add_argument("--lm125_steps", type=int, default=2, help="timed steps per 125m-width point")
    p.add_argument(
        "--lm125-compiled", action="store_true", help="125m width: also compiled, after only"
    )
    p.add_argument("--chain", action="store_true", help="also the dual-form chain alone")
    p.add_argument("--only-chain", action="store_true", help="only the dual-form chain alone")
    p.add_argument("--flops", action="store_true", help="only the FLOPs of a step by part")
    p.add_argument("--json", default=None, help="also write every number to this file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train", nargs="*", default=[], help=argparse.SUPPRESS)
    p.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--lm125_points", nargs="*", default=[], help=argparse.SUPPRESS)
    p.add_argument("--chain_points", nargs="*", default=[], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    if args.flops:
        print(flops_report())
        return
    if args.lm125_compiled and not (args.lm125 or args.only_lm125):
        raise SystemExit("--lm125-compiled: add --lm125 or --only-lm125")
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as base:
        archive = subprocess.run(
            ["git", "archive", args.base, "ttt_video"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
        results = measure({"before": Path(base), "after": ROOT}, args)
    # imported here: the workers import their own trees
    from ttt_video.train.peak_flops import measure_peak_flops

    gflops = measure_peak_flops(torch.device("cpu"), torch.float32, 2048) / 1e9
    loads = (load, os.getloadavg()[0])
    print(report(results["before"], results["after"], gflops, loads, args))
    if args.json:
        numbers = {**results, "matmul_gflops": gflops, "load_average": loads}
        Path(args.json).write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
