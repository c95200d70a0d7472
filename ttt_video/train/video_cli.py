"""The video subcommands of ``ttt-video``: ``quickstart`` and ``demo predict|classify|stream``.

    ttt-video quickstart [--out runs]
    ttt-video demo predict FILE [--ckpt CKPT] [--out runs]
    ttt-video demo classify FILE --ckpt CKPT [--out runs]
    ttt-video demo stream FILE [--ckpt CKPT] [--out runs]

``add_video_commands(sub)`` adds them to the CLI's subparsers; handlers import lazily.
"""

from __future__ import annotations

import argparse


def _quickstart(args: argparse.Namespace, extra: list[str]) -> int:
    from .quickstart import STEPS, run_quickstart, summary

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
    p.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--test-size", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_quickstart, overrides=False)


def add_video_commands(sub) -> None:
    """Add ``quickstart`` and ``demo`` to the CLI's subparsers."""
    _add_quickstart(sub)
