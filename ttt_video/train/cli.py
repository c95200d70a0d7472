"""The ``ttt-video`` command.

ttt-video smoke [--out DIR]     one-minute end-to-end check of the kernels
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _smoke(args: argparse.Namespace) -> int:
    from ttt_video.train.smoke import run_smoke, summary

    metrics = run_smoke(Path(args.out), seed=args.seed, T=args.tokens)
    print(summary(metrics, Path(args.out)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttt-video",
        description="Test-Time Training layers for long sequences and long video.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    smoke = sub.add_parser(
        "smoke",
        help="one-minute end-to-end check of the kernels (dual == naive, learning at test time, speed)",
        description="Checks the dual form against the primal form, shows TTT layers learning a "
        "drifting stream at test time (plot), and measures speed. Example: ttt-video smoke --out runs/smoke",
    )
    smoke.add_argument("--out", default="runs/smoke", help="run folder (default: runs/smoke)")
    smoke.add_argument("--seed", type=int, default=0)
    smoke.add_argument("--tokens", type=int, default=4096, help="length of the drifting stream")
    smoke.set_defaults(func=_smoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "tokens", 2) < 2:
        build_parser().error("--tokens must be at least 2")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
