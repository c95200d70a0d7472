"""One Triton chain launch on a GPU, in its own process: forward, then backward, each step
printed as it ends, then a timed second call and the error against the fp32 dual form.

    python benchmarks/gpu_probe.py mlp bf16 128 64                  # kind dtype d b
    python benchmarks/gpu_probe.py mlp bf16 128 64 --num-warps 4 --force
    compute-sanitizer --tool memcheck python benchmarks/gpu_probe.py mlp bf16 128 64 --force
    python benchmarks/gpu_probe.py mlp bf16 32 16 --tokens 40 --dry-run  # CPU: interpreter

For what ``gpu_check.py`` cannot say: which launch of a failing case faults (a fault ends the
process's CUDA context, so run each suspect in a process of its own, several at once), how
long its first call compiles, and whether another launch setting mends it. ``--force`` runs
a variant the dispatcher refuses on this GPU (``api.hopper_mlp_fault``); ``--num-warps``
overrides the warps of the chain kernels. Prints ``OK`` last when both calls ran; the
errors are relative RMS against the fp32 dual form on the same inputs (for bf16 expect
~4e-3 on the output and ~1e-2 on the gradients, as the bf16 dual form's). Run with
``CUDA_LAUNCH_BLOCKING=1`` to fault at the launch that faults. ``--dry-run`` runs on CPU
tensors in Triton's interpreter (it shows that the script runs; ``tests/test_gpu_check.py``).
Results: benchmarks/README.md, "GPU check".
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if "--dry-run" in sys.argv:  # before the first import of triton
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

import ttt_video.kernels.api as kernels_api  # noqa: E402
import ttt_video.kernels.triton.scan as scan  # noqa: E402
from ttt_video.testing import TTTInputs, error_stats, random_ttt_inputs, run_ttt  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def override_launches(num_warps: int | None, force: bool) -> None:
    """For this process: the chain kernels launched with ``num_warps`` warps (None: theirs),
    and with ``force`` no launch refused as ``api.hopper_mlp_fault``."""
    if force:
        kernels_api.hopper_mlp_fault = lambda *args: False
    if num_warps:
        launch_args = scan._launch_args
        scan._launch_args = lambda *args: {**launch_args(*args), "num_warps": num_warps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("kind", choices=["linear", "mlp"])
    p.add_argument("dtype", choices=list(DTYPES))
    p.add_argument("d", type=int, help="head dim")
    p.add_argument("b", type=int, help="mini-batch size")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--tokens", type=int, default=1000)
    p.add_argument("--num-warps", type=int, default=None, help="override the chain kernels'")
    p.add_argument("--force", action="store_true", help="run a variant refused on this GPU")
    p.add_argument("--dry-run", action="store_true", help="CPU tensors, Triton's interpreter")
    args = p.parse_args()
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: --dry-run runs the interpreter on the CPU")

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    override_launches(args.num_warps, args.force)
    tag = f"[{args.kind} {args.dtype} d={args.d} b={args.b} warps={args.num_warps or 'default'}]"
    start = time.perf_counter()

    def say(*words) -> None:
        print(tag, f"{time.perf_counter() - start:6.1f} s", *words, flush=True)

    base = random_ttt_inputs(args.kind, args.batch, args.tokens, args.heads, args.d, args.b, seed=1)

    def call(impl: str, inp: TTTInputs) -> list[torch.Tensor | None]:
        """The output and every input's gradient (None where there is none)."""
        o, _ = run_ttt(args.kind, inp, args.b, impl=impl, causal=True, output_final_state=True)
        sync()
        say(impl, "forward ended")
        grads = torch.autograd.grad(o.float().square().sum(), inp.tensors(), allow_unused=True)
        sync()
        say(impl, "backward ended")
        return [o, *grads]

    ref = call("dual", base.to(device, torch.float32))
    inp = base.to(device, DTYPES[args.dtype])
    out = call("triton", inp)
    t0 = time.perf_counter()
    call("triton", inp)
    say(f"second call, forward and backward: {(time.perf_counter() - t0) * 1e3:.1f} ms")
    if [t is None for t in ref] != [t is None for t in out]:
        raise SystemExit("the two forms give gradients to different inputs")
    pairs = [(r, o) for r, o in zip(ref, out, strict=True) if r is not None]
    errors = [error_stats(r.float(), o.float())[1] for r, o in pairs]
    say(f"error: output {errors[0]:.2e}, worst gradient {max(errors[1:]):.2e}; OK")


if __name__ == "__main__":
    main()
