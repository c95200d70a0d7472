"""The ``ttt-video`` command: a thin dispatcher, one small function per subcommand.

    ttt-video smoke [--out DIR]                                 one-minute kernel check
    ttt-video fit --config FILE [--resume auto|PATH] [--section.field VALUE ...]
    ttt-video validate --ckpt CKPT [--config FILE] [--section.field VALUE ...]
    ttt-video generate --ckpt CKPT --prompt TEXT [--max-new-tokens N]
    ttt-video eval-lm --ckpt A [--ckpt B ...] [--out DIR]       loss, ppl, per-position loss

Overrides set any config field by its dotted name (``--trainer.max_steps 50``,
``--model.num_layers 4``, ``--name my_run``); values are parsed as YAML.
Configuration, data and checkpoint errors print one line naming the file and field and
exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ttt_video.apps.video_cli import add_video_commands
from ttt_video.data.text.tokenizers import TokenizerError
from ttt_video.train.config import ConfigError

USER_ERRORS = (ConfigError, FileNotFoundError, FileExistsError, TokenizerError)


def _smoke(args: argparse.Namespace, extra: list[str]) -> int:
    from ttt_video.apps.smoke import run_smoke, summary

    metrics = run_smoke(Path(args.out), seed=args.seed, T=args.tokens)
    print(summary(metrics, Path(args.out)))
    return 0


def _fit(args: argparse.Namespace, extra: list[str]) -> int:
    from ttt_video.train.config import parse_overrides
    from ttt_video.train.runner import fit
    from ttt_video.train.tasks import load_run_config

    run = load_run_config(args.config, parse_overrides(extra))
    status = fit(run, resume=args.resume)
    shown = {k: v for k, v in status.items() if k.startswith("val/") or k == "step"}
    print(f"fit: completed {run.run_dir} {shown}")
    return 0


def _validate(args: argparse.Namespace, extra: list[str]) -> int:
    from ttt_video.train.config import parse_overrides, resolved_dict
    from ttt_video.train.runner import load_run_from_checkpoint, validate
    from ttt_video.train.tasks import build_run_config, load_run_config

    overrides = parse_overrides(extra)
    if args.config:
        run = load_run_config(args.config, overrides)
    else:
        stored, _ = load_run_from_checkpoint(args.ckpt)
        run = build_run_config(resolved_dict(stored), args.ckpt, overrides)
    metrics = validate(run, args.ckpt)
    print("validate: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    return 0


def _generate(args: argparse.Namespace, extra: list[str]) -> int:
    from ttt_video.apps.eval_lm import generate_text

    text = generate_text(
        args.ckpt, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed
    )
    print(args.prompt + text)
    return 0


def _eval_lm(args: argparse.Namespace, extra: list[str]) -> int:
    from ttt_video.apps.eval_lm import band_table, eval_lm

    results = eval_lm(
        args.ckpt, args.out, args.label, args.block_len, args.max_batches, args.stride
    )
    print(f"{'model':<28}{'params':>12}{'tokens':>12}{'val loss':>10}{'ppl':>10}")
    for r in results:
        print(f"{r.label:<28}{r.parameters:>12,}{r.tokens:>12,}{r.loss:>10.4f}{r.ppl:>10.3f}")
    print("\nmean loss by position band:")
    print(f"{'positions':<14}" + "".join(f"{r.label[:16]:>18}" for r in results))
    for first, last, means in band_table(results):
        cells = "".join(f"{'':>18}" if m is None else f"{m:>18.4f}" for m in means)
        print(f"{f'{first}-{last}':<14}{cells}")
    print(
        f"wrote {args.out}/summary.csv, per_position_loss.csv, per_position_bands.csv, "
        "per_position_loss.png"
    )
    return 0


def _add_smoke(sub) -> None:
    p = sub.add_parser(
        "smoke",
        help="one-minute end-to-end check of the kernels (dual == naive, learning at test time, speed)",
        description="Checks the dual form against the primal form, shows TTT layers learning a "
        "drifting stream at test time (plot), and measures speed. Example: ttt-video smoke --out runs/smoke",
    )
    p.add_argument("--out", default="runs/smoke", help="run folder (default: runs/smoke)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokens", type=int, default=4096, help="length of the drifting stream")
    p.set_defaults(func=_smoke, overrides=False)


def _add_training(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="train a run from a YAML config",
        description="Example: ttt-video fit --config configs/lm/ttt_linear_debug.yaml "
        "--trainer.max_steps 50. Any config field can be overridden by its dotted name.",
        allow_abbrev=False,
    )
    p.add_argument("--config", required=True, help="run YAML (configs/<family>/<name>.yaml)")
    p.add_argument("--resume", default=None, help="'auto' (the run's last.ckpt if any) or a path")
    p.set_defaults(func=_fit, overrides=True)
    p = sub.add_parser(
        "validate",
        help="validation loss of a checkpoint",
        description="Uses the run stored in the checkpoint unless --config is given.",
        allow_abbrev=False,
    )
    p.add_argument("--ckpt", required=True)
    p.add_argument("--config", default=None)
    p.set_defaults(func=_validate, overrides=True)


def _add_lm(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a language-model checkpoint")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--prompt", default="")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_generate, overrides=False)
    p = sub.add_parser(
        "eval-lm",
        help="validation loss, perplexity and per-position loss of LM checkpoints (CSV + PNG)",
    )
    p.add_argument("--ckpt", action="append", required=True, help="repeat to compare models")
    p.add_argument("--label", action="append", default=None, help="one per --ckpt")
    p.add_argument("--out", default="runs/eval_lm")
    p.add_argument("--block-len", type=int, default=None, help="evaluate at another context")
    p.add_argument(
        "--stride",
        type=int,
        default=None,
        help="start a validation block every STRIDE tokens (default: block length, disjoint); "
        "smaller: overlapping windows, a less noisy per-position curve",
    )
    p.add_argument("--max-batches", type=int, default=None)
    p.set_defaults(func=_eval_lm, overrides=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttt-video",
        description="Test-Time Training layers for long sequences and long video.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_smoke(sub)
    _add_training(sub)
    _add_lm(sub)
    add_video_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not args.overrides:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "tokens", 2) < 2:
        parser.error("--tokens must be at least 2")
    try:
        return args.func(args, extra)
    except USER_ERRORS as err:
        print(f"ttt-video {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
