"""GPU speed of the TTT kernels: Triton vs the PyTorch dual form vs ``torch.compile`` of it.

Reports tokens/s of the forward and of forward+backward for TTT-Linear and TTT-MLP over
``T = 2k .. 64k`` and head dims 64 and 128, and the latency of one decode step (Triton
copy-and-update, Triton in place, PyTorch).

    python benchmarks/kernels_gpu.py                 # on a CUDA GPU (triton.testing.do_bench)
    python benchmarks/kernels_gpu.py --tiny          # CPU smoke run in the Triton interpreter

``--tiny`` runs every code path at toy shapes under ``TRITON_INTERPRET=1`` and times with
``time.perf_counter`` (``do_bench`` needs CUDA events): it proves the script works, its
numbers measure nothing. Letters: B batch, T tokens, H heads, d head dim, b mini-batch size.
Not collected by pytest. Results go to stdout as Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial

TINY = "--tiny" in sys.argv
if TINY:  # must precede the first import of triton (triton.jit reads it when decorating)
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from ttt_video.kernels import initial_state, ttt_decode  # noqa: E402
from ttt_video.kernels.triton import decode_step_  # noqa: E402
from ttt_video.testing import TTTInputs, random_ttt_inputs, run_ttt  # noqa: E402


def timer(fn, tiny: bool) -> float:
    """Milliseconds per call of ``fn``."""
    if not tiny:
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=100)
    fn()
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def forward(call) -> None:
    with torch.no_grad():
        call()


def forward_backward(call, inp: TTTInputs) -> None:
    o = call()
    torch.autograd.grad(o, inp.tensors(), grad_outputs=torch.ones_like(o))


def scan_rows(args, device: str, dtype: torch.dtype) -> list[str]:
    """One Markdown row per (kind, d, T, impl): forward and forward+backward tokens/s."""
    rows = []
    compiled = torch.compile(run_ttt, dynamic=False) if args.compile else None
    for kind in ("linear", "mlp"):
        for d in args.d:
            for T in args.T:
                H = max(1, args.width // d)
                inp = random_ttt_inputs(kind, args.B, T, H, d, args.b).to(device, dtype)
                impls = {"triton": run_ttt, "dual": run_ttt}
                if compiled is not None:
                    impls["compile(dual)"] = compiled
                for name, fn in impls.items():
                    impl = "triton" if name == "triton" else "dual"

                    call = partial(fn, kind, inp, args.b, impl=impl)
                    ms_f = timer(partial(forward, call), args.tiny)
                    ms_fb = timer(partial(forward_backward, call, inp), args.tiny)
                    tok = args.B * T * 1e3
                    rows.append(
                        f"| {kind} | {d} | {H} | {T} | {name} | {tok / ms_f:,.0f} | {tok / ms_fb:,.0f} |"
                    )
    return rows


def decode_rows(args, device: str, dtype: torch.dtype) -> list[str]:
    """One Markdown row per (kind, d): milliseconds per decode step."""
    rows = []
    for kind in ("linear", "mlp"):
        for d in args.d:
            H = max(1, args.width // d)
            inp = random_ttt_inputs(kind, args.B, 1, H, d, args.b).to(device, dtype)
            x = [
                t.detach()
                for t in (inp.q, inp.k, inp.v, inp.lam, inp.tau, inp.ln_weight, inp.ln_bias)
            ]
            fresh = initial_state(tuple(w.detach().float() for w in inp.weights),
                                  tuple(c.detach().float() for c in inp.biases), args.B)  # fmt: skip
            owned = initial_state(
                tuple(
                    w.detach().float().expand(args.B, *w.shape).contiguous() for w in inp.weights
                ),
                tuple(c.detach().float().expand(args.B, *c.shape).contiguous() for c in inp.biases),
                args.B,
            )
            times = {}
            with torch.no_grad():
                for impl in ("triton", "dual"):  # "dual" (or "naive"): the PyTorch step
                    step = partial(ttt_decode, *x, fresh, mini_batch_size=args.b, impl=impl)
                    times[impl] = timer(step, args.tiny)
                step = partial(decode_step_, *x, owned, mini_batch_size=args.b)
                times["in place"] = timer(step, args.tiny)
            rows.append(
                f"| {kind} | {d} | {H} | {times['triton']:.3f} | {times['in place']:.3f} "
                f"| {times['dual']:.3f} |"
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="CPU interpreter smoke run (toy shapes)")
    p.add_argument("--T", type=int, nargs="+", default=[2048, 4096, 8192, 16384, 32768, 65536])
    p.add_argument("--d", type=int, nargs="+", default=[64, 128])
    p.add_argument("--width", type=int, default=1024, help="model width D = H * d")
    p.add_argument("--B", type=int, default=1)
    p.add_argument("--b", type=int, default=16, help="mini-batch size")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--no-compile", dest="compile", action="store_false")
    args = p.parse_args()
    if args.tiny:
        args.T, args.d, args.width, args.dtype = [32], [16], 32, "float32"
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        raise SystemExit("no CUDA device: run with --tiny for the interpreter smoke run")
    dtype = getattr(torch, args.dtype)
    print(f"device {device}, dtype {args.dtype}, B={args.B}, b={args.b}, D={args.width}\n")
    print("| kind | d | H | T | impl | forward tok/s | fwd+bwd tok/s |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(scan_rows(args, device, dtype)))
    print("\n| kind | d | H | Triton decode ms | Triton in place ms | PyTorch decode ms |")
    print("|---|---|---|---|---|---|")
    print("\n".join(decode_rows(args, device, dtype)))


if __name__ == "__main__":
    main()
