"""The video subcommands of ``ttt-video``: ``quickstart`` and ``demo predict|classify|stream``.

    ttt-video quickstart [--out runs]
    ttt-video demo predict FILE [--ckpt CKPT] [--out runs]
    ttt-video demo classify FILE --ckpt CKPT [--out runs]
    ttt-video demo stream FILE [--ckpt CKPT] [--out runs]

``add_video_commands(sub)`` adds them to the CLI's subparsers; handlers import lazily.
"""

from __future__ import annotations

import argparse
import sys


def _set_threads(n: int) -> None:
    """Intra-op threads. One by default: these small models are bound by per-op overhead, and
    several threads stall at every barrier when the cores are shared with other jobs."""
    import torch

    torch.set_num_threads(max(1, n))


def _quickstart(args: argparse.Namespace, extra: list[str]) -> int:
    from ttt_video.apps.quickstart import STEPS, run_quickstart, summary

    _set_threads(args.threads)
    steps = args.max_steps or STEPS
    run_dir, result = run_quickstart(args.out, steps, args.test_size, args.seed)
    print()
    print(summary(result, run_dir))
    return 0


def _add_quickstart(sub) -> None:
    p = sub.add_parser(
        "quickstart",
        help="the main job: data, train a TTT-Linear frame predictor on the CPU, compare with baselines",
        description="Prepares Moving-MNIST-style data from real MNIST digits (idempotent), trains a "
        "small TTT-Linear next-frame predictor on the CPU (minutes), rolls out 10 frames after 10 on "
        "the fixed test set against trivial baselines (zeros, mean frame, copy last frame), and "
        "writes a run folder (comparison.mp4/.gif, plots, metrics.json, summary.txt). "
        "Example: ttt-video quickstart --out runs",
    )
    p.add_argument("--out", default="runs", help="parent of the run folder (default: runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--test-size", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_quickstart, overrides=False)


def _user_errors():
    from ttt_video.data.video.errors import VideoReadError

    return (VideoReadError, ValueError)


def _demo(args: argparse.Namespace, extra: list[str]) -> int:
    from ttt_video.apps import demo

    _set_threads(args.threads)
    try:
        if args.demo == "predict":
            fit = demo.FitOptions(
                size=args.size,
                channels=args.channels,
                seconds=args.fit_seconds,
                max_steps=args.fit_steps,
            )
            demo.predict_demo(args.file, args.out, args.ckpt, args.context, args.horizon, fit)
        elif args.demo == "classify":
            demo.classify_demo(args.file, args.ckpt, args.out, args.chunk)
        else:
            demo.stream_demo(
                args.file, args.out, args.ckpt, args.preset, args.size, args.channels, args.chunk
            )
    except _user_errors() as err:
        print(f"ttt-video demo {args.demo}: error: {err}", file=sys.stderr)
        return 2
    return 0


def _common(p, size: int = 64) -> None:
    p.add_argument("file", help="a video file (any length, any size; PyAV reads it)")
    p.add_argument("--out", default="runs", help="parent of the run folder (default: runs)")
    p.add_argument("--size", type=int, default=size, help="frame side fed to a new model")
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.set_defaults(func=_demo, overrides=False)


def _add_demo(sub) -> None:
    demo = sub.add_parser("demo", help="demos on a video file: predict, classify, stream")
    kinds = demo.add_subparsers(dest="demo", required=True)
    p = kinds.add_parser(
        "predict",
        help="next-frame predictions and a rollout, side by side with the truth",
        description="Conditions on the file's frames and shows predictions next to the truth with "
        "a per-frame PSNR plot. Without --ckpt, first fits a small TTT-Linear predictor on the "
        "video's first frames (test-time training, a few minutes on a CPU). Example: "
        "ttt-video demo predict vtest.avi --fit-seconds 120",
    )
    _common(p)
    p.add_argument(
        "--ckpt", default=None, help="a video_predict checkpoint (default: fit on the video)"
    )
    p.add_argument(
        "--context", type=int, default=None, help="frames given before the rollout (default 3/4)"
    )
    p.add_argument("--horizon", type=int, default=16, help="frames rolled out (default 16)")
    p.add_argument(
        "--fit-seconds", type=float, default=180.0, help="time for the fit (default 180)"
    )
    p.add_argument(
        "--fit-steps", type=int, default=2000, help="step limit for the fit (default 2000)"
    )
    p = kinds.add_parser(
        "classify",
        help="labels over time for a file",
        description="Streams the file through a video_classify checkpoint and writes the label "
        "and class probabilities after every frame. Example: ttt-video demo classify clip.mp4 "
        "--ckpt runs/long_range_ttt_linear/checkpoints/last.ckpt",
    )
    _common(p)
    p.add_argument("--ckpt", required=True, help="a video_classify checkpoint")
    p.add_argument("--chunk", type=int, default=16, help="frames per model call")
    p = kinds.add_parser(
        "stream",
        help="read a whole file at native fps with constant memory; frames/s and memory plots",
        description="Feeds every frame through the model keeping only its recurrent state, and "
        "plots frames/s and memory against the frame index. Example: ttt-video demo stream "
        "vtest.avi (compare: --preset video_attention_small)",
    )
    _common(p)
    p.add_argument(
        "--ckpt", default=None, help="a video checkpoint (default: a new --preset model)"
    )
    p.add_argument("--preset", default="video_ttt_linear_small")
    p.add_argument("--chunk", type=int, default=1, help="frames per model call (default 1)")


def add_video_commands(sub) -> None:
    """Add ``quickstart`` and ``demo`` to the CLI's subparsers."""
    _add_quickstart(sub)
    _add_demo(sub)
