"""CPU speed of the TTT kernels: naive vs dual vs autograd through the dual-form loop.

Reports tokens/s for forward and forward+backward of TTT-Linear and TTT-MLP, and the
achieved GFLOP/s of the dual forward against (a) a large float32 matmul and (b) batched
matmuls of the same small shapes the dual form uses, all timed in the same run.

    python benchmarks/kernels_cpu.py                      # the issue's setting (minutes)
    python benchmarks/kernels_cpu.py --T 256 --H 2 --naive-T 32 --repeats 1   # smoke

Letters: B batch, T tokens, H heads, d head dim, b mini-batch size, R = B*H.
Not collected by pytest. Results go to stdout as a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from ttt_video.kernels.common import layer_norm, ln_l2_grad
from ttt_video.testing import TTTInputs, random_ttt_inputs, run_ttt


def autograd_dual(inp: TTTInputs, b: int) -> torch.Tensor:
    """The dual form as straightforward PyTorch: a loop over mini-batches, autograd records
    every op. The baseline the explicit backward of ``kernels/dual.py`` must beat.
    Requires ``T % b == 0`` and a fresh state. Returns ``o: [B, T, H, d]``."""
    B, T, H, d = inp.q.shape
    N = T // b

    def blocks(x):  # [B, T, H, e] -> [B, H, N, b, e]
        return x.reshape(B, N, b, H, -1).permute(0, 3, 1, 2, 4)

    q, k, v = blocks(inp.q), blocks(inp.k), blocks(inp.v)
    lam = blocks(inp.lam[..., None])[..., 0]
    mask = torch.ones(b, b).tril()
    ws = [w.unsqueeze(0).expand(B, *w.shape) for w in inp.weights]
    cs = [c.unsqueeze(0).expand(B, *c.shape).unsqueeze(2) for c in inp.biases]
    lnw, lnb = inp.ln_weight[:, None], inp.ln_bias[:, None]
    outs = []
    for n in range(N):
        E = mask * inp.tau[:, None] * lam[:, :, n, None, :]  # [B, H, b, b]
        X, Z = [k[:, :, n]], []
        for l, (w, c) in enumerate(zip(ws, cs)):
            Z.append(X[l] @ w + c)
            if l < len(ws) - 1:
                X.append(torch.nn.functional.gelu(Z[l], approximate="tanh"))
        G = [None] * len(ws)
        G[-1] = ln_l2_grad(Z[-1], v[:, :, n] - k[:, :, n], lnw, lnb)
        for l in reversed(range(len(ws) - 1)):
            gp = torch.func.grad(lambda z: torch.nn.functional.gelu(z, approximate="tanh").sum())
            G[l] = (G[l + 1] @ ws[l + 1].transpose(-1, -2)) * gp(Z[l])
        xb = q[:, :, n]
        for l, (w, c) in enumerate(zip(ws, cs)):
            if l > 0:
                xb = torch.nn.functional.gelu(xb, approximate="tanh")
            xb = xb @ w + c - (E * (xb @ X[l].transpose(-1, -2))) @ G[l] - E @ G[l]
        outs.append(xb)
        e = E[..., -1, :, None]  # [B, H, b, 1]
        ws = [w - (e * x).transpose(-1, -2) @ g for w, x, g in zip(ws, X, G)]
        cs = [c - (e * g).sum(-2, keepdim=True) for c, g in zip(cs, G)]
    zbar = torch.stack(outs, 2).reshape(B, H, T, d).transpose(1, 2)
    return inp.q + layer_norm(zbar, inp.ln_weight, inp.ln_bias)


def dual_flops(kind: str, B: int, T: int, H: int, d: int, b: int) -> float:
    """Matmul FLOPs of the dual forward (2 per multiply-add)."""
    widths = [d, d] if kind == "linear" else [d, 4 * d, d]
    per_mb = 0
    for i, o in zip(widths[:-1], widths[1:]):
        per_mb += 3 * 2 * b * i * o  # Z = X W, Zb = Xb W, P = X^T (lam G)
        per_mb += 2 * b * b * i + 2 * b * b * o  # Xb X^T, (A + M) G
    per_mb += 2 * b * d * 4 * d if kind == "mlp" else 0  # G_0 = G_1 W_1^T
    return per_mb * B * H * (T // b)


CLOCK = {"wall": time.perf_counter, "process": time.process_time}
clock = time.perf_counter


def timed(fn, repeats: int) -> float:
    """Best time of ``repeats`` calls (after one warm-up), by the chosen clock."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def matmul_rates(kind: str, R: int, d: int, b: int, repeats: int) -> tuple[float, float]:
    """GFLOP/s of one large float32 matmul and of bmm at the dual form's small shapes."""
    a, c = torch.randn(2048, 2048), torch.randn(2048, 2048)
    big = 2 * 2048**3 / timed(lambda: a @ c, repeats) / 1e9
    m = 4 * d if kind == "mlp" else d
    x, w = torch.randn(R, b, d), torch.randn(R, d, m)
    reps = 200
    small = 2 * R * b * d * m * reps / timed(lambda: [x @ w for _ in range(reps)], repeats) / 1e9
    return big, small


def bench(kind: str, args) -> list[str]:
    B, T, H, d, b = args.B, args.T, args.H, args.d, args.b
    inp = random_ttt_inputs(kind, B, T, H, d, b, seed=0).requires_grad_()
    short = dataclasses.replace(
        inp,
        **{f: getattr(inp, f)[:, : args.naive_T] for f in "qkv"},
        lam=inp.lam[:, : args.naive_T],
    )
    runs = {
        "naive": (lambda: run_ttt(kind, short, b, impl="naive"), args.naive_T),
        "autograd loop": (lambda: autograd_dual(inp, b), T),
        "dual": (lambda: run_ttt(kind, inp, b, impl="dual"), T),
    }
    rows, rates = [], {}
    for name, (fn, n_tok) in runs.items():
        reps = 1 if name == "naive" else args.repeats
        with torch.no_grad():
            fwd = timed(fn, reps)
        fb = timed(lambda fn=fn: fn().sum().backward(), reps)
        rates[name] = (B * n_tok / fwd, B * n_tok / fb)
        rows.append(
            f"| {kind} | {name} | {n_tok} | {rates[name][0]:,.0f} | {rates[name][1]:,.0f} |"
        )
    fwd_dual = B * T / rates["dual"][0]
    gflops = dual_flops(kind, B, T, H, d, b) / fwd_dual / 1e9
    big, small = matmul_rates(kind, B * H, d, b, args.repeats)
    speed = {k: rates["dual"][1] / rates[k][1] for k in ("naive", "autograd loop")}
    rows.append(
        f"| {kind} | dual fwd+bwd speed-up | | | x{speed['naive']:.1f} vs naive, "
        f"x{speed['autograd loop']:.2f} vs autograd loop |"
    )
    rows.append(
        f"| {kind} | dual fwd GFLOP/s | | {gflops:.1f} | {gflops / big:.0%} of a 2048^2 matmul "
        f"({big:.0f}), {gflops / small:.0%} of bmm at its shapes ({small:.0f}) |"
    )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--B", type=int, default=2)
    p.add_argument("--T", type=int, default=2048)
    p.add_argument("--H", type=int, default=12)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--b", type=int, default=16)
    p.add_argument("--naive-T", type=int, default=128, help="tokens for the (slow) naive form")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--kinds", default="linear,mlp")
    p.add_argument(
        "--clock",
        choices=CLOCK,
        default="wall",
        help="'process' counts CPU time of this process: steadier on a busy machine "
        "(use with --threads 1)",
    )
    args = p.parse_args()
    global clock
    clock = CLOCK[args.clock]
    torch.set_num_threads(args.threads)
    print(
        f"B={args.B} T={args.T} H={args.H} d={args.d} b={args.b} float32, "
        f"torch {torch.__version__}, {args.threads} threads, {args.clock} clock\n"
    )
    print("| kernel | form | tokens | fwd tok/s | fwd+bwd tok/s |")
    print("|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        for row in bench(kind, args):
            print(row, flush=True)


if __name__ == "__main__":
    main()
