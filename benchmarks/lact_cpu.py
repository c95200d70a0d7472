"""CPU speed of the LaCT kernel (chunked form) against the machine's float32 matmul rate.

Times forward and forward+backward of ``kernels.lact.lact(impl="chunked")`` at the issue's
setting (chunk C = 2048, head dim 128) and, in the same run, one large float32 matmul
(2048^3) and a batched matmul at the chunk's own shape (``[B*H, 2C, d] @ [B*H, d, 2m]``), and
reports the kernel's matmul FLOP rate as a share of each. Also reports what autograd keeps for
the backward (bytes per token, as a multiple of the q, k, v, lr inputs), which is what an
explicit backward could save.

    python benchmarks/lact_cpu.py                                   # the issue's setting
    python benchmarks/lact_cpu.py --T 1024 --C 256 --d 64 --repeats 1   # smoke (seconds)

Letters: B batch, T tokens, H heads, d head dim, m = r d hidden width, C chunk size.
Not collected by pytest. Prints Markdown; reuses the timer of ``kernels_cpu.py`` (run it as a
script from the repository root, so that ``benchmarks/`` is on the import path).
"""

from __future__ import annotations

import argparse
import os

import kernels_cpu
import torch

from ttt_video.apps.measure import saved_bytes
from ttt_video.kernels.lact import lact

MODES = {  # name: (causal, momentum, muon)
    "causal, Muon": (True, 0.0, True),
    "causal, plain step": (True, 0.0, False),
    "non-causal, Muon + momentum": (False, 0.9, True),
}


def make_inputs(B: int, T: int, H: int, d: int, m: int) -> list[torch.Tensor]:
    """Inputs shaped like a layer's: unit-norm q, k; silu v; softplus-sized learning rates."""
    g = torch.Generator().manual_seed(0)
    q, k = (torch.nn.functional.normalize(torch.randn(B, T, H, d, generator=g), dim=-1)
            for _ in range(2))  # fmt: skip
    v = torch.nn.functional.silu(torch.randn(B, T, H, d, generator=g))
    lr = torch.rand(B, T, H, 3, generator=g) * 2e-3
    w1, w3 = (torch.randn(H, m, d, generator=g) / d**0.5 for _ in range(2))
    w2 = torch.randn(H, d, m, generator=g) / m**0.5
    return [t.requires_grad_() for t in (q, k, v, lr, w1, w2, w3)]


def lact_flops(B: int, T: int, H: int, d: int, m: int, C: int, muon: bool) -> float:
    """Matmul FLOPs of the forward (2 per multiply-add): 9 products of ``n x d x m`` per chunk
    (``[Q; K] W13^T`` counts 4, ``V W2``, ``G2``, ``[G1; G3]`` 2, the output) plus, with Muon,
    5 Newton-Schulz iterations on each of the 3 matrices per whole chunk."""
    per_chunk_token = 2 * 9 * m * d
    flops = B * H * T * per_chunk_token
    if muon:
        small, large = min(m, d), max(m, d)
        per_iter = 2 * small * small * large * 2 + 2 * small**3  # gram, gram @ gram, (.) @ x
        flops += B * H * (T // C) * 3 * 5 * per_iter
    return flops


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--B", type=int, default=1)
    p.add_argument("--T", type=int, default=8192)
    p.add_argument("--H", type=int, default=4)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--r", type=float, default=1.0, help="hidden ratio: m = r d")
    p.add_argument("--C", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--clock", choices=kernels_cpu.CLOCK, default="wall",
                   help="'process': CPU time of this process (steadier on a busy machine, "
                   "with --threads 1)")  # fmt: skip
    args = p.parse_args()
    kernels_cpu.clock = kernels_cpu.CLOCK[args.clock]
    torch.set_num_threads(args.threads)
    B, T, H, d, C = args.B, args.T, args.H, args.d, args.C
    m = round(args.r * d)
    print(
        f"B={B} T={T} H={H} d={d} m={m} C={C} float32, torch {torch.__version__}, "
        f"{args.threads} threads, {args.clock} clock, best of {args.repeats}, "
        f"load average {os.getloadavg()[0]:.2f} at the start\n"
    )
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    big = 2 * 2048**3 / kernels_cpu.timed(lambda: a @ b, args.repeats) / 1e9
    x, w = torch.randn(B * H, 2 * C, d), torch.randn(B * H, d, 2 * m)
    bmm = 2 * B * H * 2 * C * d * 2 * m / kernels_cpu.timed(lambda: x @ w, args.repeats) / 1e9
    inputs = make_inputs(B, T, H, d, m)
    q, k, v, lr, *weights = inputs
    input_bytes = sum(t.numel() * t.element_size() for t in (q, k, v, lr))
    print("| mode | fwd tok/s | fwd GFLOP/s | fwd+bwd tok/s | fwd+bwd GFLOP/s | saved for bwd |")
    print("|---|---|---|---|---|---|")
    for name, (causal, momentum, muon) in MODES.items():

        def run(causal=causal, momentum=momentum, muon=muon):
            return lact(q, k, v, lr, *weights, chunk_size=C, causal=causal, momentum=momentum,
                        muon=muon, impl="chunked")  # fmt: skip

        with torch.no_grad():
            t_fwd = kernels_cpu.timed(run, args.repeats)
        t_fb = kernels_cpu.timed(lambda run=run: run().sum().backward(), args.repeats)
        flops = lact_flops(B, T, H, d, m, C, muon)
        fwd, fb = flops / t_fwd / 1e9, 3 * flops / t_fb / 1e9
        saved = saved_bytes(run) / input_bytes
        print(
            f"| {name} | {B * T / t_fwd:,.0f} | {fwd:.1f} ({fwd / big:.0%} of matmul, "
            f"{fwd / bmm:.0%} of bmm) | {B * T / t_fb:,.0f} | {fb:.1f} ({fb / big:.0%} of "
            f"matmul, {fb / bmm:.0%} of bmm) | {saved:.1f}x inputs |",
            flush=True,
        )
    print(
        f"\nReferences in the same run: float32 2048^3 matmul {big:.1f} GFLOP/s; bmm at the "
        f"chunk's shape [{B * H}, {2 * C}, {d}] @ [{B * H}, {d}, {2 * m}] {bmm:.1f} GFLOP/s. "
        f"fwd+bwd counts the backward as 2x the forward's matmul FLOPs. "
        f"Load average {os.getloadavg()[0]:.2f} at the end."
    )


if __name__ == "__main__":
    main()
