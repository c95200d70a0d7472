"""Decode latency and state memory of TTT-Linear vs the attention baseline, and prefill
throughput of one 125m-shaped block, on CPU.

    python benchmarks/lm_decode.py                 # the full run (~10 minutes on 2 cores)
    python benchmarks/lm_decode.py --quick         # smoke: debug models, short contexts
    python benchmarks/lm_decode.py --compiled      # decode eager vs torch.compile (~10 minutes)

Decode: per-token latency (median over ``--steps`` greedy steps, B = 1) at two stream
positions. A TTT model reaches the far position by prefilling real tokens (1024; 64 with
``--quick`` and ``--compiled``) and then moving the recorded stream position forward (its
state has a fixed size; only ``position`` and the position inside the mini-batch matter, and
both positions are multiples of b = 16). The attention baseline gets a KV cache of that
length filled with random keys and values. Prefill: tokens/s of a single block (width 768,
12 heads, FFN 2048; M backbone for TTT, no pre-conv for attention), B = 1, forward only; a
size predicted to take more than ``--budget`` seconds (quadratic extrapolation for
attention, linear for TTT) is skipped and reported as such.

``--compiled``: the decode latency alone, eager and through ``torch.compile`` (the model's
``compile()``, as ``ttt-video generate --compile`` does), for TTT-Linear, TTT-MLP and
attention at the debug size and at the 125m width (D = 768, 12 heads, FFN 2048, still 2
blocks), at positions 1024 and 16384; the wall time of the first ``--steps`` + 3 compiled
tokens (warm-up and timed steps; they compile) is reported apart. A compiled TTT step has
fixed shapes; attention's KV cache grows by one token per step, so it runs a graph with a
dynamic length.

Letters: B batch, T tokens, P stream position, H heads, d head dim, D width.
Not collected by pytest. Results go to stdout as Markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch
from call_overhead import WIDTH_125M  # benchmarks/, this script's folder

from ttt_video.layers import Block, BlockConfig, KVCache
from ttt_video.models import BackboneState, LanguageModel, from_name


def far_state(model: LanguageModel, position: int, prompt: int) -> BackboneState:
    """A state at stream position ``position`` (see the module docstring for how)."""
    cfg = model.cfg
    if cfg.mixer == "attention":
        shape = (1, cfg.num_heads, position, cfg.head_dim)
        blocks = tuple(
            dataclasses.replace(b, mixer=KVCache(torch.randn(shape), torch.randn(shape), shape[2]))
            for b in model(torch.zeros(1, 1, dtype=torch.long))[1].blocks
        )
        return BackboneState(blocks)
    ids = torch.randint(0, cfg.vocab_size, (1, prompt))
    _, state = model(ids)
    if (position - prompt) % cfg.mini_batch_size:
        raise ValueError("position: must differ from the prompt by a multiple of b")
    blocks = tuple(
        dataclasses.replace(b, mixer=dataclasses.replace(b.mixer, position=position))
        for b in state.blocks
    )
    return BackboneState(blocks)


def decode_latency(model: LanguageModel, state: BackboneState, steps: int) -> float:
    """Median seconds per decoded token from ``state`` (3 warm-up steps first)."""
    token = torch.zeros(1, 1, dtype=torch.long)
    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        logits, state = model(token, state)
        token = logits[:, -1].argmax(-1, keepdim=True)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_table(names: list[str], positions: list[int], prompt: int, steps: int) -> None:
    print("| model | position | ms / token | state bytes |")
    print("|---|---|---|---|")
    for name in names:
        torch.manual_seed(0)
        model = from_name(name).eval()
        rows = []
        for position in positions:
            state = far_state(model, position, prompt)
            ms = 1e3 * decode_latency(model, state, steps)
            rows.append((position, ms, state.nbytes()))
            print(f"| {name} | {position} | {ms:.2f} | {state.nbytes()} |", flush=True)
        ratio = rows[-1][1] / rows[0][1]
        print(
            f"| {name} | ratio {positions[-1]}/{positions[0]} | {ratio:.2f} | {rows[-1][2] / rows[0][2]:.2f} |"
        )


# (label, preset, overrides) of the --compiled table
COMPILED_POINTS = [
    (f"{mixer}_debug{suffix}", f"{mixer}_debug", overrides)
    for suffix, overrides in (("", {}), (" @ 125m width", WIDTH_125M))
    for mixer in ("ttt_linear", "ttt_mlp", "attention")
]


def compiled_decode_table(positions: list[int], prompt: int, steps: int) -> None:
    """Decode ms/token, eager and compiled, for ``COMPILED_POINTS`` (module docstring)."""
    from ttt_video.models.compiling import compile_model

    head = " | ".join(f"{mode} ms @ {p}" for mode in ("eager", "compiled") for p in positions)
    first_calls = f"first {steps + 3} compiled tokens s"  # decode_latency's warm-up + steps
    print(f"| model | {head} | compiled / eager @ {positions[0]} | {first_calls} |")
    print("|---" * (2 * len(positions) + 3) + "|")
    for name, preset, overrides in COMPILED_POINTS:
        torch.manual_seed(0)
        model = from_name(preset, **overrides).eval()
        states = [far_state(model, p, prompt) for p in positions]
        eager = [1e3 * decode_latency(model, s, steps) for s in states]
        torch._dynamo.reset()  # dynamo's recompile limit counts over every model it has seen
        if not compile_model(model):
            raise SystemExit("--compiled: torch.compile cannot run here (the warning says why)")
        start = time.perf_counter()
        decode_latency(model, states[0], steps)  # the first calls compile
        first = time.perf_counter() - start
        compiled = [1e3 * decode_latency(model, s, steps) for s in states]
        cells = " | ".join(f"{ms:.3f}" for ms in eager + compiled)
        print(f"| {name} | {cells} | {compiled[0] / eager[0]:.2f} | {first:.0f} |", flush=True)


def prefill_table(lengths: list[int], budget: float) -> dict[str, dict[int, float]]:
    print("| mixer | T | seconds | tokens/s |")
    print("|---|---|---|---|")
    results: dict[str, dict[int, float]] = {}
    for mixer in ("ttt_linear", "ttt_mlp", "attention"):
        m = mixer != "attention"
        torch.manual_seed(0)
        block = Block(BlockConfig(mixer=mixer, pre_conv=m, share_qk=m, use_gate=m)).eval()
        block(torch.randn(1, 256, 768))  # first-call set-up cost is not throughput
        results[mixer] = {}
        last = None
        for T in lengths:
            power = 2 if mixer == "attention" else 1
            if last is not None and last[1] * (T / last[0]) ** power > budget:
                print(f"| {mixer} | {T} | skipped (> {budget:.0f} s predicted) | |", flush=True)
                continue
            x = torch.randn(1, T, 768)
            start = time.perf_counter()
            block(x)
            sec = time.perf_counter() - start
            results[mixer][T] = sec
            last = (T, sec)
            print(f"| {mixer} | {T} | {sec:.2f} | {T / sec:.0f} |", flush=True)
    return results


def crossover(results: dict[str, dict[int, float]]) -> None:
    common = sorted(set(results["ttt_linear"]) & set(results["attention"]))
    faster = [T for T in common if results["ttt_linear"][T] < results["attention"][T]]
    if faster:
        print(
            f"\nTTT-Linear prefill is faster than attention from T = {faster[0]} on (of {common})."
        )
    else:
        print(f"\nTTT-Linear prefill is not faster than attention at any measured T ({common}).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="debug models, short contexts")
    parser.add_argument("--steps", type=int, default=20, help="timed decode steps per point")
    parser.add_argument("--budget", type=float, default=60.0, help="max seconds per prefill point")
    parser.add_argument("--decode-threads", type=int, default=1, help="torch threads for decoding")
    parser.add_argument("--prefill-threads", type=int, default=2, help="torch threads for prefill")
    parser.add_argument("--compiled", action="store_true", help="decode eager vs torch.compile")
    args = parser.parse_args()
    if args.compiled and args.quick:
        parser.error("--compiled runs its own points: drop --quick")
    torch.set_grad_enabled(False)
    print(
        f"torch {torch.__version__}; decode on {args.decode_threads} thread(s), prefill on {args.prefill_threads}\n"
    )
    if args.compiled:
        torch.set_num_threads(args.decode_threads)
        from ttt_video.train.peak_flops import measure_peak_flops

        gflops = measure_peak_flops(torch.device("cpu"), torch.float32, 2048) / 1e9
        print(f"fp32 2048^3 matmul: {gflops:.0f} GFLOP/s; load average {os.getloadavg()[0]:.1f}\n")
        compiled_decode_table([1024, 16384], 64, args.steps)
        return
    quick = args.quick
    names = ["ttt_linear_debug", "attention_debug"] + (
        [] if quick else ["ttt_linear_125m", "attention_125m"]
    )
    torch.set_num_threads(args.decode_threads)
    decode_table(
        names,
        [64, 1024] if quick else [1024, 16384],
        64 if quick else 1024,
        5 if quick else args.steps,
    )
    print()
    torch.set_num_threads(args.prefill_threads)
    lengths = [256, 1024] if quick else [1024, 2048, 4096, 8192, 16384, 32768]
    crossover(prefill_table(lengths, args.budget))


if __name__ == "__main__":
    main()
