"""``ttt-video smoke``: a one-minute end-to-end check of the TTT kernels on this machine.

1. Chain of trust: the dual form against the primal (naive) form on outputs and gradients.
2. Learning at test time: a stream whose keys map to values through a hidden linear map
   that changes halfway; the TTT-Linear and TTT-MLP hidden states learn it, forget it and
   learn the new one, with no outer training at all. The per-token error is plotted.
3. Speed of the dual form against the naive form.

Writes ``smoke.png`` and ``metrics.json`` to the run folder and prints a summary.
Letters: B batch, T tokens, H heads, d head dim, b mini-batch size.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ttt_video.io_utils import pyplot, write_json
from ttt_video.kernels.common import layer_norm
from ttt_video.testing import error_stats, random_ttt_inputs, run_ttt


def chain_of_trust(seed: int) -> dict[str, float]:
    """Max relative-RMS error of dual vs naive (float64) over outputs and all gradients."""
    out = {}
    for kind in ("linear", "mlp"):
        inp = random_ttt_inputs(kind, B=2, T=40, H=2, d=16, b=16, dtype=torch.float64, seed=seed)
        inp.requires_grad_()
        errs = []
        res = {}
        for impl in ("naive", "dual"):
            o = run_ttt(kind, inp, 16, impl=impl)
            res[impl] = (o, torch.autograd.grad(o.square().sum(), inp.tensors()))
        errs.append(error_stats(res["naive"][0], res["dual"][0])[1])
        errs += [error_stats(a, c)[1] for a, c in zip(res["naive"][1], res["dual"][1])]
        out[kind] = max(errs)
    return out


def drifting_stream(T: int, H: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys ``k: [1, T, H, d]`` and values ``v = k + LN(k A)``, ``A`` redrawn at ``T/2``."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(1, T, H, d, generator=g)
    v = torch.empty_like(k)
    ones, zeros = torch.ones(H, d), torch.zeros(H, d)
    for half in (slice(0, T // 2), slice(T // 2, T)):
        A = torch.randn(H, d, d, generator=g) / d**0.5
        mapped = torch.einsum("bthi,hij->bthj", k[:, half], A)
        v[:, half] = k[:, half] + layer_norm(mapped, ones, zeros)
    return k, v


def test_time_learning(T: int, seed: int) -> dict[str, list[float]]:
    """Per-token error ``mean((o - v)^2)`` of TTT-Linear/MLP reading a drifting stream."""
    H, d, b = 4, 32, 16
    k, v = drifting_stream(T, H, d, seed)
    curves = {}
    for kind, base_lr in (("linear", 1.0), ("mlp", 0.1)):
        inp = random_ttt_inputs(kind, B=1, T=T, H=H, d=d, b=b, seed=seed)
        inp.q, inp.k, inp.v = k, k, v
        inp.lam = torch.full((1, T, H), base_lr * 0.5 / d)  # sigmoid(0) = 0.5, as at init
        inp.tau = 1.0 / torch.arange(1, b + 1, dtype=torch.float32)
        inp.ln_weight, inp.ln_bias = torch.ones(H, d), torch.zeros(H, d)
        inp.weights = tuple(w * 0.02 * w.shape[-2] ** 0.5 for w in inp.weights)  # N(0, 0.02)
        with torch.no_grad():
            o = run_ttt(kind, inp, b)
        curves[kind] = (o - v).square().mean((0, 2, 3)).tolist()
    return curves


def speed(seed: int) -> dict[str, float]:
    """Forward tokens/s of naive and dual TTT-Linear at B=1, H=4, d=64."""
    rates = {}
    for impl, T in (("naive", 64), ("dual", 2048)):
        inp = random_ttt_inputs("linear", B=1, T=T, H=4, d=64, b=16, seed=seed)
        best = float("inf")
        with torch.no_grad():
            for _ in range(3):  # best of three: the machine may be busy
                t0 = time.perf_counter()
                run_ttt("linear", inp, 16, impl=impl)
                best = min(best, time.perf_counter() - t0)
        rates[impl] = T / best
    return rates


def windowed(curve: list[float], width: int) -> list[float]:
    """Means over consecutive windows of ``width`` tokens."""
    return [
        sum(curve[i : i + width]) / len(curve[i : i + width]) for i in range(0, len(curve), width)
    ]


def plot(curves: dict[str, list[float]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for kind, curve in curves.items():
        w = windowed(curve, 32)
        ax.plot(
            [32 * i + 16 for i in range(len(w))],
            w,
            label=f"TTT-{kind.upper() if kind == 'mlp' else 'Linear'}",
        )
    T = len(next(iter(curves.values())))
    ax.axvline(T // 2, color="gray", ls="--", lw=1)
    ax.text(T // 2, ax.get_ylim()[1] * 0.9, " hidden map changes", color="gray")
    ax.set_xlabel("token")
    ax.set_ylabel("error of the layer's answer (mean sq.)")
    ax.set_title("Learning at test time: no outer training, only the inner loop")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


MIN_TOKENS = 512
"""The shortest stream the summary's windows fit in: 256 tokens on each side of the change."""


def run_smoke(out_dir: Path, seed: int = 0, T: int = 4096) -> dict:
    """Run the three checks, write ``smoke.png`` and ``metrics.json``; return the metrics.
    ``T``: the drifting stream's length, at least ``MIN_TOKENS`` (``ValueError``)."""
    if T < MIN_TOKENS:
        raise ValueError(f"T: at least {MIN_TOKENS} tokens (256 on each side of the change)")
    out_dir.mkdir(parents=True, exist_ok=True)
    trust = chain_of_trust(seed)
    curves = test_time_learning(T, seed)
    rates = speed(seed)
    plot(curves, out_dir / "smoke.png")
    first = {k: sum(c[:64]) / 64 for k, c in curves.items()}
    end1 = {k: sum(c[T // 2 - 256 : T // 2]) / 256 for k, c in curves.items()}
    end2 = {k: sum(c[-256:]) / 256 for k, c in curves.items()}
    metrics = {
        "dual_vs_naive_rel_err": trust,
        "error_first_64": first,
        "error_before_change": end1,
        "error_at_end": end2,
        "tokens_per_s": rates,
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def summary(metrics: dict, out_dir: Path) -> str:
    m = metrics
    lines = [
        "ttt-video smoke",
        f"  dual == naive (float64, outputs + every gradient): max rel. error "
        f"linear {m['dual_vs_naive_rel_err']['linear']:.1e}, mlp {m['dual_vs_naive_rel_err']['mlp']:.1e}",
        "  learning at test time (error of the layer's answer, lower is better):",
        "    layer        first 64 tokens   before the change   at the end",
    ]
    for kind in ("linear", "mlp"):
        lines.append(
            f"    TTT-{kind:<8} {m['error_first_64'][kind]:>12.3f} {m['error_before_change'][kind]:>19.3f}"
            f" {m['error_at_end'][kind]:>12.3f}"
        )
    r = m["tokens_per_s"]
    lines.append(
        f"  speed (TTT-Linear forward, 1x4 heads, d=64): dual {r['dual']:,.0f} tok/s, "
        f"naive {r['naive']:,.0f} tok/s (x{r['dual'] / r['naive']:.0f})"
    )
    lines.append(f"  wrote {out_dir / 'smoke.png'} and {out_dir / 'metrics.json'}")
    return "\n".join(lines)
