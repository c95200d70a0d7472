"""Cost against clip length: where TTT's constant cost per frame overtakes attention's growing one.

For every backbone (``video_<mixer>_small``: 64x64 frames, 16 tokens per frame, width 128, 2
blocks) and clip length ``F``, in one process, one thread, the backbones interleaved so that they
share the machine's state:

- training step: a teacher-forced next-frame MSE forward and backward on ``[B, F, 1, 64, 64]``
  (best of ``--repeats`` after one warm-up), and the activation memory it saves for the backward
  (the bytes of the distinct tensors autograd keeps: the training step's memory that grows
  with ``F``);
- streaming: the wall time of one more frame after ``F`` frames (a one-frame call on the
  carried state, the median of ``--stream-calls`` calls) and the bytes of that state.

Backbones: TTT-Linear, TTT-MLP, LaCT (one-frame chunks, 4-frame window), full causal attention,
and sliding-window attention over the last ``--window-frames`` frames (``attention_window``)::

    python benchmarks/video_clip_length.py                    # F = 25 ... 800, ~10 min
    python benchmarks/video_clip_length.py --frames 25 100 --models ttt_linear attention
    python benchmarks/video_clip_length.py --compiled --models ttt_linear ttt_mlp attention attention_window
    python benchmarks/video_clip_length.py --compiled --streaming-only --frames 25 100 400 1600 \
        --models ttt_linear ttt_mlp attention attention_window   # LaCT: see the report

``--compiled`` measures every model through ``torch.compile`` (the models' ``compile`` option,
which the quickstart trains with): inductor's caches are cleared before each (model, length),
so every point compiles its own fixed-shape graphs, as a training run at one clip length does;
the compiling happens in the uncounted warm-up calls.

Writes ``report.md``, ``metrics.json``, ``train_s_vs_length.png`` and ``frame_ms_vs_length.png``
to a new folder under ``--out``; the report gives the machine's fp32 matmul GFLOP/s, measured
in the same run. Letters: ``B`` clips, ``F`` frames per clip. Not collected by pytest.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from ttt_video.apps.measure import best_of, median_time, saved_bytes
from ttt_video.apps.report import load_average, new_run_dir, plot_lines, save_report
from ttt_video.io_utils import write_json
from ttt_video.models import from_name
from ttt_video.models.compiling import compile_model
from ttt_video.train.peak_flops import measure_peak_flops

LABELS = {
    "ttt_linear": "TTT-Linear",
    "ttt_mlp": "TTT-MLP",
    "lact": "LaCT",
    "attention": "full attention",
    "attention_window": "window attention",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(LABELS), choices=list(LABELS))
    p.add_argument("--frames", nargs="+", type=int, default=[25, 50, 100, 200, 400, 800])
    p.add_argument("--batch", type=int, default=1, help="B, clips per training step")
    p.add_argument("--window-frames", type=int, default=8, help="window attention's frames")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compiled", action="store_true", help="through torch.compile (see above)")
    p.add_argument("--stream-calls", type=int, default=100, help="timed one-frame calls")
    p.add_argument("--streaming-only", action="store_true", help="no training step")
    p.add_argument("--out", default="runs/video_clip_length")
    return p.parse_args(argv)


def build(model: str, window_frames: int) -> torch.nn.Module:
    """The backbone's ``video_*_small`` model (seeded, float32, training mode)."""
    torch.manual_seed(0)
    if model == "attention_window":
        tokens = from_name("video_attention_small").cfg.tokens_per_frame
        return from_name("video_attention_small", attention_window=window_frames * tokens)
    return from_name(f"video_{model}_small")


def measure(model: torch.nn.Module, frames: int, args: argparse.Namespace) -> dict[str, float]:
    """Training-step seconds and saved MB at ``F = frames``; streaming ms per frame and state KB
    after ``frames`` frames."""
    clip = torch.rand(args.batch, frames + 1, 1, 64, 64)
    if args.compiled:
        torch.compiler.reset()  # fixed-shape graphs for this length (the module docstring)
        compile_model(model)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(clip[:, :-1])
        F.mse_loss(out.next_frames, clip[:, 1:]).backward()

    def forward_only() -> None:
        model(clip[:, :-1])

    out = {}
    if not args.streaming_only:
        out["train_s"] = best_of(step, args.repeats, warmup=True)
        out["saved_mb"] = saved_bytes(forward_only) / 2**20
    with torch.no_grad():
        state = model(clip[:, :frames]).state
        frame_s = median_time(lambda: model(clip[:, frames:], state), args.stream_calls)
    return {
        **out,
        "frame_ms": 1e3 * frame_s,
        "state_kb": state.nbytes() / 2**10,
    }


def report(results: dict, info: dict, args: argparse.Namespace) -> str:
    """The Markdown report: one table per measure, models by column."""
    models = list(results)
    head = "| F | " + " | ".join(LABELS[m] for m in models) + " |"
    rule = "|---" * (len(models) + 1) + "|"
    lines = [
        f"Cost against clip length, `video_*_small` (64x64, 16 tokens per frame), B={args.batch}, "
        f"{'compiled (torch.compile), ' if args.compiled else 'eager, '}"
        f"{args.threads} thread(s), window attention over {args.window_frames} frames. fp32 "
        f"matmul reference: {info['gflops']:.0f} GFLOP/s; load average {info['load_start']} at "
        f"the start, {info['load_end']} at the end.",
    ]
    tables = {
        "train_s": "Training step (forward + backward), seconds",
        "saved_mb": "Activation memory saved for the backward, MB",
        "frame_ms": "Streaming: one more frame after F frames, ms",
        "state_kb": "Streaming state after F frames, KB",
    }
    for key, title in tables.items():
        if key not in results[models[0]][0]:  # --streaming-only
            continue
        lines += ["", f"{title}:", "", head, rule]
        for i, f in enumerate(args.frames):
            fmt = ",.0f" if key == "state_kb" else ",.3g"
            cells = [format(results[m][i][key], fmt) for m in models]
            lines.append(f"| {f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure every (model, length), then write and print the report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = new_run_dir(args.out, "sweep")
    info = {
        "load_start": load_average(),
        "gflops": measure_peak_flops(torch.device("cpu"), torch.float32) / 1e9,
    }
    models = {m: build(m, args.window_frames) for m in args.models}
    results: dict[str, list[dict]] = {m: [] for m in models}
    for frames in args.frames:
        for name, model in models.items():
            results[name].append({"frames": frames, **measure(model, frames, args)})
            print(name, results[name][-1], flush=True)
        write_json(folder / "metrics.json", {"results": results, **info})
    info["load_end"] = load_average()
    write_json(folder / "metrics.json", {"results": results, **info})
    for key, ylabel in (("train_s", "training step, s"), ("frame_ms", "ms per streamed frame")):
        if args.streaming_only and key == "train_s":
            continue
        plot_lines(
            {LABELS[m]: [r[key] for r in rows] for m, rows in results.items()},
            folder / f"{key}_vs_length.png",
            f"{ylabel} against clip length",
            "frames in the clip",
            ylabel,
            x=args.frames,
        )
    return save_report(folder, report(results, info, args))


if __name__ == "__main__":
    raise SystemExit(main())
