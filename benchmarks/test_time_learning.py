"""Test-time learning on real footage: next-frame error against frame index over vtest.avi.

Does a TTT model's error fall as its state learns the video it is reading (the video form of
the paper's loss by token position), while sliding-window attention stays flat? Every model is
trained for the same wall-clock budget on the other real clips of the cache (``ttt-video
prepare clips``: tree.avi, cockatoo.mp4, realshort.mp4, decoded once at 64x64 grey into
``train_clips/`` of the run folder; never vtest.avi), then reads vtest.avi (795 frames, 10 fps,
pedestrians) once, ``--chunk-frames`` frames per call with the state carried from call to call,
and the one-step prediction of every frame 1..794 is scored against the true frame.

Training: the shipped ``folder_predict_*`` run files (``ttt_video/configs/video``) at 64x64
grey, teacher-forced next-frame prediction (``model.objective.rollout_training: false``) on
random clips of ``--clip-frames`` frames at the native frame rate, one clip per training video
per step (3 per batch), no validation, ``data.time_budget_s`` of ``--budget-min`` minutes (the
schedule runs on elapsed time) on ``--threads`` thread(s), one model after another; the clips
are decoded in the training process (``--workers`` moves it to loader processes). Models:

- ``ttt_linear``: ``video_ttt_linear_small`` (a fixed-size state: inner weights updated every
  frame);
- ``attention_window``: ``video_attention_small`` with ``model.attention_window`` =
  ``--window-frames`` x 16 tokens per frame (the cache keeps that many tokens);
- ``attention``: ``video_attention_small``, full causal attention (its cache grows with the
  video);
- ``lact``: ``video_lact_small`` (large-chunk TTT: SwiGLU fast weights updated once per
  one-frame chunk, with a 4-frame attention window in the same layer).

Evaluation streams the file (``ttt_video.apps.demo.stream_one_step``: decoded chunk by chunk at
64x64 grey, centre crop, exactly the pixels the training loader gives; one chunk held at a
time). Baselines: copy the last frame; and, for TTT-Linear, the same trained model with its
state reset at the start of every call (each prediction then sees 1..``--chunk-frames`` frames
of the video), which separates "learns from this video" from "is a good predictor".

The error is the Moving-MNIST metric (``ttt_video.train.video_metrics.mse_per_frame``): squared
error summed over the 64x64 pixels in [0, 1], predictions clamped to [0, 1]::

    python benchmarks/test_time_learning.py                    # 4 models x 6 min, all of vtest
    python benchmarks/test_time_learning.py --budget-min 0.2 --max-frames 200 --out /tmp/ttl
    python benchmarks/test_time_learning.py --models ttt_linear --clip-frames 32

The report (``report.md``, ``metrics.json`` with the per-frame curves, ``per_frame_mse.png``)
goes to a new folder under ``--out``, which is printed, with the training runs beside it.

Letters: T frames read from vtest.avi, K frames per call, C channels (1), S frame side (64).
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ttt_video.apps.demo import load_checkpoint_model, stream_one_step
from ttt_video.apps.report import load_average, new_run_dir, save_report
from ttt_video.data.fetch import clips_dir
from ttt_video.data.video.frames import FrameFormat, frames_to_float
from ttt_video.data.video.manifest import find_videos
from ttt_video.data.video.reader import probe_video
from ttt_video.data.video.stream import stream_video
from ttt_video.data.video.writer import VideoWriter
from ttt_video.io_utils import pyplot, write_json
from ttt_video.models.video import VideoModel, VideoOutput, VideoState
from ttt_video.train.config import config_path, parse_overrides
from ttt_video.train.peak_flops import measure_peak_flops
from ttt_video.train.runner import fit
from ttt_video.train.tasks import load_run_config
from ttt_video.train.video_metrics import mse_per_frame

TEST_CLIP = "vtest.avi"
SIZE, CHANNELS = 64, 1
VARIANTS = {  # name: (shipped run file, label in the report)
    "ttt_linear": ("folder_predict_ttt_linear", "TTT-Linear"),
    "attention_window": ("folder_predict_attention", "sliding-window attention"),
    "attention": ("folder_predict_attention", "full causal attention"),
    "lact": ("folder_predict_lact", "LaCT"),
}
COPY = "copy last frame"
RESET = "TTT-Linear, state reset every call"
SEGMENT_STARTS = (1, 100, 400)  # the table's frame ranges: from each to the next, then the end


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--budget-min", type=float, default=6.0, help="training minutes per model")
    p.add_argument("--max-steps", type=int, default=100_000, help="also stop after this many")
    p.add_argument("--window-frames", type=int, default=8, help="attention_window, in frames")
    p.add_argument("--clip-frames", type=int, default=20, help="frames per training clip")
    p.add_argument("--chunk-frames", type=int, default=16, help="frames per call at evaluation")
    p.add_argument("--max-frames", type=int, default=None, help="read only the first this many")
    p.add_argument("--smooth", type=int, default=25, help="moving average of the plot, frames")
    p.add_argument("--workers", type=int, default=0, help="training loader processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of every model's run file (dotted path, YAML value)",
    )
    p.add_argument("--out", default="runs/test_time_learning")
    return p.parse_args(argv)


def shrink_training_clips(folder: Path) -> tuple[Path, Path]:
    """``folder/train_clips`` holding every cached clip but the test clip, decoded at the
    training size (64x64 grey, centre crop) and written back nearly losslessly (x264, crf 1), so
    that training steps do not spend their budget decoding 1280x720 frames; returns it and the
    test clip's path (``FileNotFoundError`` naming the command when they are missing)."""
    videos = find_videos(clips_dir())
    test = clips_dir() / TEST_CLIP
    train = [v for v in videos if v.name != TEST_CLIP]
    if not test.exists() or not train:
        raise FileNotFoundError(
            f"{clips_dir()}: needs {TEST_CLIP} and other clips; run `ttt-video prepare clips`"
        )
    small = folder / "train_clips"
    small.mkdir()
    for video in train:
        with VideoWriter(small / f"{video.stem}.mp4", probe_video(video).fps, crf=1) as writer:
            for frames in stream_video(video, 64, fmt=frame_format(), allow_truncated=True):
                writer.write(frames.expand(-1, 3, -1, -1))  # grey stored as RGB
    return small, test


def train(args: argparse.Namespace, variant: str, folder: Path, clips: Path) -> dict:
    """Train ``variant`` for the budget: its checkpoint, optimiser steps and wall seconds."""
    config = config_path(VARIANTS[variant][0])
    overrides = {
        "name": variant,
        "out_dir": str(folder),
        "model.channels": CHANNELS,
        "model.image_size": SIZE,
        "model.objective.rollout_training": False,
        "data.path": str(clips),
        "data.val_path": None,
        "data.channels": CHANNELS,
        "data.size": SIZE,
        "data.num_input": args.clip_frames - args.clip_frames // 2,
        "data.num_output": args.clip_frames // 2,
        "data.time_budget_s": 60 * args.budget_min,
        "data.num_workers": args.workers,
        "trainer.max_steps": args.max_steps,
        "trainer.val_check_interval": args.max_steps,
        "trainer.seed": args.seed,
        "trainer.progress_bar": False,
        "trainer.logger": "csv",
    }
    if variant == "attention_window":
        tokens = load_run_config(config, overrides).model.tokens_per_frame
        overrides["model.attention_window"] = args.window_frames * tokens
    overrides.update(parse_overrides([f"--{item}" for item in args.set]))
    run = load_run_config(config, overrides)
    t0 = time.perf_counter()
    status = fit(run)
    seconds = time.perf_counter() - t0
    ckpt = run.run_dir / "checkpoints" / "last.ckpt"
    return {"ckpt": ckpt, "steps": status["step"], "train_s": round(seconds, 1)}


class ResetEveryCall(nn.Module):
    """``model`` called with no state, whatever state it is given: every call starts afresh."""

    def __init__(self, model: VideoModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor, state: VideoState | None = None) -> VideoOutput:
        """``frames: [1, K, C, S, S]`` -> the model's output with the state reset."""
        return self.model(frames)


def frame_format() -> FrameFormat:
    """The frames of training (``VideoPredictData`` size and channels, centre crop)."""
    return FrameFormat(size=SIZE, channels=CHANNELS)


def stream_errors(model: nn.Module, test: Path, args: argparse.Namespace) -> dict:
    """One pass of the test clip through ``model``: the one-step MSE of frames 1..T-1
    (``[T - 1]``), the state's bytes after each call, and the pass's wall seconds."""
    errors, state_bytes = [], []
    t0 = time.perf_counter()
    for t, x, pred, out in stream_one_step(model, test, frame_format(), args.chunk_frames):
        keep = len(x) if args.max_frames is None else min(len(x), args.max_frames - t)
        errors += mse_per_frame(pred[None, :keep], x[None, :keep])[0].tolist()
        state_bytes.append(out.state.nbytes())
        if t + len(x) >= (args.max_frames or float("inf")):
            break
    seconds = time.perf_counter() - t0
    return {"mse": errors[1:], "state_bytes": state_bytes, "eval_s": round(seconds, 1)}


def copy_last_errors(test: Path, args: argparse.Namespace) -> dict:
    """The copy-last-frame baseline on the same frames; its seconds are the decoding's alone."""
    errors, last = [], None
    t0 = time.perf_counter()
    for frames in stream_video(test, args.chunk_frames, fmt=frame_format(), allow_truncated=True):
        x = frames_to_float(frames)
        before = torch.cat((x[:1] if last is None else last[None], x[:-1]))
        errors += mse_per_frame(before[None], x[None])[0].tolist()
        last = x[-1]
        if len(errors) >= (args.max_frames or float("inf")):
            break
    seconds = time.perf_counter() - t0
    return {"mse": errors[1 : args.max_frames], "eval_s": round(seconds, 1)}


def segments(n: int) -> dict[str, slice]:
    """The table's frame ranges within frames ``1..n`` (a curve's entries ``0..n-1``): label
    ``"a-b"`` (frames ``a`` to ``b`` inclusive) -> the slice of the curve; ranges past ``n``
    left out."""
    ends = [a - 1 for a in SEGMENT_STARTS[1:]] + [n]
    return {
        f"{a}-{min(b, n)}": slice(a - 1, min(b, n)) for a, b in zip(SEGMENT_STARTS, ends) if a <= n
    }


def summary(mse: list[float], copy: list[float]) -> dict:
    """Mean MSE per frame range (``segments``) and against the copy baseline on the same
    frames, the least-squares slope per 100 frames, and the mean
    over the last quarter of the frames over the first quarter's (also over the baseline's
    same ratio: below 1 when the model gains on the baseline as the video goes on)."""
    y, base = np.asarray(mse), np.asarray(copy)
    frames = np.arange(1, len(y) + 1)
    row = {"all": float(y.mean()), "all_vs_copy": float(y.mean() / base.mean())}
    for key, part in segments(len(y)).items():
        row[key] = float(y[part].mean())
        row[f"{key}_vs_copy"] = float(y[part].mean() / base[part].mean())
    quarter = max(len(y) // 4, 1)
    row["slope_per_100"] = float(100 * np.polyfit(frames, y, 1)[0]) if len(y) > 1 else None
    first, last = slice(None, quarter), slice(-quarter, None)
    row["last_vs_first_quarter"] = float(y[last].mean() / y[first].mean())
    row["last_vs_first_quarter_vs_copy"] = row["last_vs_first_quarter"] / float(
        base[last].mean() / base[first].mean()
    )
    return row


def cell(value: float | None, digits: int) -> str:
    """A table cell: the value to ``digits`` decimals, or ``-``."""
    return "-" if value is None else f"{value:.{digits}f}"


def report(rows: dict, info: dict, args: argparse.Namespace) -> str:
    """The Markdown report: a cost table and an error table, one row per model and baseline."""
    frames = info["frames"]
    keys = list(segments(frames - 1))
    lines = [
        f"Next-frame MSE on {TEST_CLIP} (frames 1..{frames - 1} of {frames}, 64x64 grey), "
        f"models trained {args.budget_min} min each on {', '.join(info['train_clips'])} "
        f"(clips of {args.clip_frames} frames, teacher-forced), {args.threads} thread(s), seed "
        f"{args.seed}; {args.chunk_frames} frames per call at evaluation. Machine reference: "
        f"fp32 matmul {info['gflops']:.1f} GFLOP/s; load average {info['load_start']} at the "
        f"start, {info['load_end']} at the end.",
        "",
        "MSE: squared error summed over the 4,096 pixels of a frame in [0, 1] (prediction "
        "clamped), averaged over the frames of the range (a-b: frames a to b); `/copy`: over "
        "the copy-last-frame baseline's on the same frames; slope: least-squares MSE change "
        "per 100 frames; Q4/Q1: mean MSE of the last quarter of the frames over the first "
        "quarter's; Q4/Q1 /copy: that over the copy baseline's Q4/Q1 (the video's own change "
        "of difficulty divided out: below 1 when the model gains on the baseline as it reads).",
        "",
        "| method | "
        + " | ".join(f"MSE {k}" for k in keys)
        + " | MSE all | "
        + " | ".join(f"/copy {k}" for k in keys)
        + " | /copy all | slope/100 | Q4/Q1 | Q4/Q1 /copy |",
        "|---|" + "---:|" * (2 * len(keys) + 5),
    ]
    for name, r in rows.items():
        cells = [cell(r[k], 1) for k in keys] + [cell(r["all"], 1)]
        cells += [cell(r[f"{k}_vs_copy"], 3) for k in keys] + [cell(r["all_vs_copy"], 3)]
        cells += [cell(r["slope_per_100"], 2), cell(r["last_vs_first_quarter"], 3)]
        cells.append(cell(r["last_vs_first_quarter_vs_copy"], 3))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| method | params | train steps | train s | eval s | ms/frame | state KB after the "
        "first call | state KB at the end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in info["costs"].items():
        state = c.get("state_bytes", [])
        kb = [cell(s / 1024, 0) for s in state[:1] + state[-1:]] or ["-", "-"]
        trained = (
            [f"{c['params']:,}", str(c["steps"]), str(c["train_s"])] if "params" in c else ["-"] * 3
        )
        cells = trained + [str(c["eval_s"]), f"{1000 * c['eval_s'] / frames:.1f}", *kb]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"eval s: one pass over the {frames} frames, decoding included (the copy baseline's "
        "row is the decoding alone). State: the model's recurrent state (TTT inner weights, "
        "KV caches, last frame).",
    ]
    if args.set:
        lines += ["", "Overrides: " + " ".join(args.set)]
    return "\n".join(lines) + "\n"


def moving_average(y: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(frame, mean)`` of every full window of ``width`` values of ``y`` (frames from 1),
    placed at the window's centre; the values themselves when ``y`` is shorter."""
    width = min(width, len(y))
    means = np.convolve(y, np.ones(width) / width, mode="valid")
    return np.arange(len(means)) + 1 + (width - 1) / 2, means


def plot(curves: dict[str, list[float]], baseline: str, path: Path, width: int, title: str) -> Path:
    """Per-frame MSE of every curve, raw (faint) and its ``width``-frame moving average (top);
    each moving average over the ``baseline``'s (bottom)."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=(3, 2))
    _, base = moving_average(np.asarray(curves[baseline]), width)
    for k, (name, ys) in enumerate(curves.items()):
        y = np.asarray(ys)
        color = f"C{k}"
        top.plot(np.arange(1, len(y) + 1), y, color=color, alpha=0.15, linewidth=0.7)
        frames, means = moving_average(y, width)
        top.plot(frames, means, color=color, linewidth=1.6)
        bottom.plot(frames, means / base, color=color, label=name, linewidth=1.6)
    top.set_title(title)
    top.set_ylabel("next-frame MSE (sum over pixels)")
    bottom.legend(fontsize=8, loc="upper right")
    bottom.set_ylabel(f"over {baseline}\n({width}-frame means)")
    bottom.set_xlabel("frame index")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Train and evaluate every model, then write the report, metrics and plot."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = new_run_dir(args.out, "vtest")
    clips, test = shrink_training_clips(folder)
    info = {
        "args": vars(args),
        "train_clips": sorted(p.name for p in clips.iterdir()),
        "load_start": load_average(),
        "gflops": measure_peak_flops(torch.device("cpu"), torch.float32) / 1e9,
        "costs": {},
    }
    copy = copy_last_errors(test, args)
    curves = {COPY: copy["mse"]}
    info["costs"][COPY] = {"eval_s": copy["eval_s"]}
    info["frames"] = len(copy["mse"]) + 1
    for variant in args.models:
        trained = train(args, variant, folder, clips)
        model, _ = load_checkpoint_model(trained.pop("ckpt"))
        trained["params"] = model.num_parameters()
        runs = {VARIANTS[variant][1]: model}
        if variant == "ttt_linear":
            runs[RESET] = ResetEveryCall(model)
        for name, runnable in runs.items():
            result = stream_errors(runnable, test, args)
            curves[name] = result.pop("mse")
            info["costs"][name] = {**trained, **result}
            print(name, {k: v for k, v in info["costs"][name].items() if k != "state_bytes"})
        write_json(folder / "metrics.json", {"curves": curves, **info})
    info["load_end"] = load_average()
    rows = {name: summary(ys, curves[COPY]) for name, ys in curves.items()}
    write_json(folder / "metrics.json", {"summary": rows, "curves": curves, **info})
    title = f"Next-frame MSE on {TEST_CLIP} ({args.budget_min} min of training per model)"
    plot(curves, COPY, folder / "per_frame_mse.png", args.smooth, title)
    return save_report(folder, report(rows, info, args))


if __name__ == "__main__":
    raise SystemExit(main())
