"""The ``ttt-video`` command: a thin dispatcher, one small function per subcommand.

    ttt-video quickstart [--out runs] [--max_steps N] [--test_size N]
    ttt-video fit --config NAME|FILE [--resume auto|PATH] [--section.field VALUE ...]
    ttt-video fit --config NAME --help [model|data|optim|trainer]     every field, documented
    ttt-video fit --config NAME --print_config                        the resolved YAML
    ttt-video validate --ckpt CKPT [--config FILE] [--device D] [--section.field VALUE ...]
    ttt-video generate --ckpt CKPT --prompt TEXT [--max_new_tokens N] [--compile] [--device D]
    ttt-video eval-lm --ckpt A [--ckpt B ...] [--out DIR] [--device D]
    ttt-video demo predict|classify|stream FILE [--ckpt CKPT] [--device D]
    ttt-video export --ckpt CKPT --out DIR                  config.json + model.safetensors
    ttt-video prepare mnist|austen|clips|text|index|all     data into the cache folder
    ttt-video list models|configs|tasks
    ttt-video smoke [--out DIR]                             one-minute kernel check

One flag style: ``--max_new_tokens`` like ``--trainer.max_steps`` (the hyphenated spelling
is accepted too). ``--config`` takes a path or the name of a shipped config
(``ttt-video list configs``). Overrides set any config field by its dotted name; values are
parsed as YAML. ``--device`` is ``auto`` (a GPU when one is visible), ``cpu``, ``cuda`` or
``cuda:N``; ``--threads`` sets torch's intra-op threads (default: torch's own choice; 2 for
quickstart).
Configuration, data and checkpoint errors print one line naming the file and field and exit
with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from tqdm import tqdm

from ttt_video.apps.flags import normalize_flags
from ttt_video.data.text.tokenizers import TokenizerError
from ttt_video.data.video.errors import UnreadableDataError, VideoReadError
from ttt_video.train.config import ConfigError

USER_ERRORS = (
    ConfigError,
    FileNotFoundError,
    FileExistsError,
    TokenizerError,
    UnreadableDataError,
    VideoReadError,
)
SECTIONS = ("top", "model", "data", "optim", "trainer")
DEVICE_HELP = "auto (a GPU when one is visible), cpu, cuda or cuda:N (default: auto)"


def thread_count(text: str) -> int:
    """``--threads``: a positive integer (argparse turns the error into a usage message)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` when the user gave it (torch's default otherwise)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


# --- training -------------------------------------------------------------------------------


def _resolve(args: argparse.Namespace, extra: list[str]):
    """The run for ``fit``/``validate``: from ``--config`` or the checkpoint, with overrides."""
    from ttt_video.train.config import parse_overrides, resolved_dict
    from ttt_video.train.runner import load_run_from_checkpoint
    from ttt_video.train.tasks import build_run_config, load_run_config

    overrides = parse_overrides(extra)
    if args.config:
        return load_run_config(args.config, overrides)
    stored, _ = load_run_from_checkpoint(args.ckpt)
    return build_run_config(resolved_dict(stored), args.ckpt, overrides)


def _show_config(args: argparse.Namespace, extra: list[str], parser) -> bool:
    """Handle ``--help [SECTION]`` and ``--print_config``; True when one was handled."""
    from ttt_video.apps.config_help import describe_run
    from ttt_video.train.config import dump_yaml, resolved_dict
    from ttt_video.train.tasks import build_run_config

    if args.help is None and not args.print_config:
        return False
    if args.config or getattr(args, "ckpt", None):
        run = _resolve(args, extra)
    else:
        run = build_run_config({"task": args.task}, f"defaults of task {args.task}")
    if args.print_config:
        print(dump_yaml(resolved_dict(run)), end="")
        return True
    parser.print_help()
    print()
    print(describe_run(run, args.help, from_file=bool(args.config)))
    return True


def _fit(args: argparse.Namespace, extra: list[str], parser) -> int:
    from ttt_video.train.runner import fit

    if _show_config(args, extra, parser):
        return 0
    if not args.config:
        parser.error("--config is required (a path or a shipped name: ttt-video list configs)")
    _set_threads(args)
    run = _resolve(args, extra)
    status = fit(run, resume=args.resume)
    shown = {k: v for k, v in status.items() if k.startswith("val/") or k == "step"}
    print(f"fit: completed {run.run_dir} {shown}")
    return 0


def _validate(args: argparse.Namespace, extra: list[str], parser) -> int:
    from ttt_video.train.runner import validate

    if args.help is not None and not (args.ckpt or args.config):
        parser.print_help()  # the fields come from the checkpoint's run: --ckpt CKPT --help
        return 0
    if _show_config(args, extra, parser):
        return 0
    if not args.ckpt:
        parser.error("--ckpt is required (a run checkpoint: runs/NAME/checkpoints/last.ckpt)")
    _set_threads(args)
    metrics = validate(_resolve(args, extra), args.ckpt, device=args.device)
    print("validate: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    return 0


def _config_flags(p: argparse.ArgumentParser, task: bool) -> None:
    p.add_argument(
        "-h",
        "--help",
        nargs="?",
        const="all",
        default=None,
        choices=("all", *SECTIONS),
        metavar="SECTION",
        help="show this help and every config field with its value and meaning "
        "(all sections, or one of: " + ", ".join(SECTIONS) + ")",
    )
    p.add_argument("--print_config", action="store_true", help="print the resolved YAML, exit")
    if task:
        p.add_argument(
            "--task",
            default="lm",
            help="task whose fields --help lists when no --config is given (default: lm)",
        )


def _add_training(sub) -> None:
    p = sub.add_parser(
        "fit",
        add_help=False,
        help="train a run from a YAML config",
        description="Example: ttt-video fit --config ttt_linear_debug --trainer.max_steps 50. "
        "Any config field can be overridden by its dotted name; --help model lists them.",
        allow_abbrev=False,
    )
    p.add_argument("--config", default=None, help="a run YAML path or a shipped config name")
    p.add_argument("--resume", default=None, help="'auto' (the run's last.ckpt if any) or a path")
    _threads_flag(p)
    _config_flags(p, task=True)
    p.set_defaults(func=_fit, overrides=True, parser=p)
    p = sub.add_parser(
        "validate",
        add_help=False,
        help="validation metrics of a checkpoint",
        description="Uses the run stored in the checkpoint unless --config is given; "
        "--ckpt CKPT --help lists that run's fields.",
        allow_abbrev=False,
    )
    p.add_argument("--ckpt", "--ckpt_path", help="a run checkpoint (.ckpt; required)")
    p.add_argument("--config", default=None)
    _runtime_flags(p)
    _config_flags(p, task=False)
    p.set_defaults(func=_validate, overrides=True, parser=p, task=None)


# --- language models ------------------------------------------------------------------------


def _generate(args: argparse.Namespace, extra: list[str], parser) -> int:
    from ttt_video.apps.eval_lm import generate_text

    _set_threads(args)
    text = generate_text(
        args.ckpt,
        args.prompt,
        args.max_new_tokens,
        args.temperature,
        args.top_k,
        args.seed,
        device=args.device,
        compile=args.compile,
    )
    print(args.prompt + text)
    return 0


def _eval_lm(args: argparse.Namespace, extra: list[str], parser) -> int:
    from ttt_video.apps.eval_lm import band_table, eval_lm

    _set_threads(args)
    results = eval_lm(
        args.ckpt,
        args.out,
        args.label,
        args.block_len,
        args.max_batches,
        args.stride,
        device=args.device,
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


def _threads_flag(
    p: argparse.ArgumentParser, default: int | None = None, help_text: str = ""
) -> None:
    """``--threads`` (``thread_count``); ``help_text`` replaces the one of torch's default."""
    p.add_argument(
        "--threads",
        type=thread_count,
        default=default,
        help=help_text or "torch threads (default: torch's)",
    )


def _runtime_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    _threads_flag(p)


def _add_lm(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a language-model checkpoint")
    p.add_argument("--ckpt", "--ckpt_path", required=True)
    p.add_argument("--prompt", default="")
    p.add_argument("--max_new_tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    p.add_argument("--top_k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--compile",
        action="store_true",
        help="decode through torch.compile: the same greedy tokens; TTT models decode "
        "1.7-4.4x faster per token on a CPU after 10-60 s of compiling, so it pays for long "
        "continuations (benchmarks/lm_decode.md)",
    )
    _runtime_flags(p)
    p.set_defaults(func=_generate)
    p = sub.add_parser(
        "eval-lm",
        help="validation loss, perplexity and per-position loss of LM checkpoints (CSV + PNG)",
    )
    p.add_argument("--ckpt", action="append", required=True, help="repeat to compare models")
    p.add_argument("--label", action="append", default=None, help="one per --ckpt")
    p.add_argument("--out", default="runs/eval_lm")
    p.add_argument("--block_len", type=int, default=None, help="evaluate at another context")
    p.add_argument(
        "--stride",
        type=int,
        default=None,
        help="start a validation block every STRIDE tokens (default: block length, disjoint); "
        "smaller: overlapping windows, a less noisy per-position curve",
    )
    p.add_argument("--max_batches", type=int, default=None)
    _runtime_flags(p)
    p.set_defaults(func=_eval_lm)


# --- video: quickstart and demos ------------------------------------------------------------


# The compiled quickstart step is 1.36x faster on 2 threads than on 1 (benchmarks/
# quickstart_threads.md); more threads are not measured.
QUICKSTART_THREADS = min(2, os.cpu_count() or 1)


def _quickstart(args: argparse.Namespace, extra: list[str], parser) -> int:
    from ttt_video.apps.quickstart import STEPS, run_quickstart, summary

    _set_threads(args)
    run_dir, result = run_quickstart(args.out, args.max_steps or STEPS, args.test_size, args.seed)
    print()
    print(summary(result, run_dir))
    return 0


def _add_quickstart(sub) -> None:
    p = sub.add_parser(
        "quickstart",
        help="train a TTT-Linear frame predictor on Moving-MNIST-style data, compare with baselines",
        description="Prepares Moving-MNIST-style data from real MNIST digits (idempotent), trains a "
        "small TTT-Linear next-frame predictor on the CPU (5 to 12 minutes), rolls out 10 frames "
        "after 10 on the fixed test set against trivial baselines (zeros, mean frame, copy last "
        "frame), and writes a run folder (comparison.mp4/.gif, plots, metrics.json, report.md). "
        "A one-minute try: ttt-video quickstart --max_steps 100 --test_size 200",
    )
    p.add_argument("--out", default="runs", help="parent of the run folder (default: runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max_steps", type=int, default=None, help="training steps (default: the recipe's 1800)"
    )
    p.add_argument(
        "--test_size", type=int, default=None, help="test sequences (default: all 2,000)"
    )
    _threads_flag(
        p,
        QUICKSTART_THREADS,
        "torch threads (default 2, or 1 on a 1-core machine: the compiled step runs 1.36x "
        "faster on 2 than on 1; on a machine busy with other jobs, 1 can be faster)",
    )
    p.set_defaults(func=_quickstart)


def _demo(args: argparse.Namespace, extra: list[str], parser) -> int:
    from ttt_video.apps import demo

    _set_threads(args)
    if args.demo == "predict":
        fit = demo.FitOptions(
            size=args.size,
            channels=args.channels,
            seconds=args.fit_seconds,
            max_steps=args.fit_steps,
        )
        demo.predict_demo(
            args.file,
            args.out,
            args.ckpt,
            args.context,
            args.horizon,
            fit,
            device=args.device,
            compile=args.compile,
        )
    elif args.demo == "classify":
        demo.classify_demo(
            args.file,
            args.ckpt,
            args.out,
            args.chunk,
            size=args.size,
            channels=args.channels,
            device=args.device,
            compile=args.compile,
        )
    else:
        demo.stream_demo(
            args.file,
            args.out,
            args.ckpt,
            args.preset,
            args.size,
            args.channels,
            args.chunk,
            device=args.device,
            compile=args.compile,
        )
    return 0


def _demo_flags(p, size_help: str, size: int | None = 64) -> None:
    p.add_argument("file", help="a video file (any length, any size; PyAV reads it)")
    p.add_argument("--out", default="runs", help="parent of the run folder (default: runs)")
    p.add_argument("--size", type=int, default=size, help=size_help)
    p.add_argument("--channels", type=int, default=None if size is None else 3, choices=(1, 3))
    p.add_argument(
        "--compile",
        action="store_true",
        help="run the model through torch.compile (predict: the fit on the video too)",
    )
    _runtime_flags(p)
    p.set_defaults(func=_demo)


def _add_demo(sub) -> None:
    demo = sub.add_parser("demo", help="demos on a video file: predict, classify, stream")
    kinds = demo.add_subparsers(dest="demo", required=True)
    p = kinds.add_parser(
        "predict",
        help="next-frame predictions and a rollout, side by side with the truth",
        description="Conditions on the file's frames and shows predictions next to the truth with "
        "a per-frame PSNR plot. Without --ckpt, first fits a small TTT-Linear predictor on the "
        "video's first frames (test-time training, a few minutes on a CPU). Example: "
        "ttt-video demo predict vtest.avi --fit_seconds 120",
    )
    _demo_flags(p, "frame side of the model fitted on the video (default 64)")
    p.add_argument(
        "--ckpt", default=None, help="a video_predict checkpoint (default: fit on the video)"
    )
    p.add_argument(
        "--context",
        type=int,
        default=None,
        help="frames given before the rollout (default 3/4 of the file, fewer if the horizon "
        "would not fit)",
    )
    p.add_argument("--horizon", type=int, default=16, help="frames rolled out (default 16)")
    p.add_argument(
        "--fit_seconds", type=float, default=180.0, help="time for the fit (default 180)"
    )
    p.add_argument(
        "--fit_steps", type=int, default=2000, help="step limit for the fit (default 2000)"
    )
    p = kinds.add_parser(
        "classify",
        help="labels over time for a file",
        description="Streams the file through a video_classify checkpoint and writes the label "
        "and class probabilities after every frame. Example: ttt-video demo classify clip.mp4 "
        "--ckpt runs/long_range_ttt_linear/checkpoints/last.ckpt",
    )
    _demo_flags(p, "frame side: the checkpoint's (giving another one is an error)", size=None)
    p.add_argument("--ckpt", required=True, help="a video_classify checkpoint")
    p.add_argument("--chunk", type=int, default=16, help="frames per model call")
    p = kinds.add_parser(
        "stream",
        help="read a whole file at native fps with constant memory; frames/s and memory plots",
        description="Feeds every frame through the model keeping only its recurrent state, and "
        "plots frames/s and memory against the frame index. Example: ttt-video demo stream "
        "vtest.avi (compare: --preset video_attention_small)",
    )
    _demo_flags(p, "frame side of a new --preset model (default 64)")
    p.add_argument(
        "--ckpt", default=None, help="a video checkpoint (default: a new --preset model)"
    )
    p.add_argument("--preset", default="video_ttt_linear_small")
    p.add_argument("--chunk", type=int, default=1, help="frames per model call (default 1)")


# --- models, data, checks -------------------------------------------------------------------


def _export(args: argparse.Namespace, extra: list[str], parser) -> int:
    from ttt_video.apps.export import export_run

    out = export_run(args.ckpt, args.out)
    print(f"export: wrote {out} (load it with ttt_video.load({str(out)!r}))")
    return 0


def _prepare(args: argparse.Namespace, extra: list[str], parser) -> int:
    from ttt_video.apps.prepare import run_prepare

    return run_prepare(args.dataset, extra)


def _list(args: argparse.Namespace, extra: list[str], parser) -> int:
    if args.what == "models":
        from ttt_video.models.registry import list_models

        names = list_models()
    elif args.what == "configs":
        from ttt_video.train.config import list_configs

        names = [f"{name:<40}{path.parent.name}/" for name, path in list_configs().items()]
    else:
        from ttt_video.train.tasks import list_tasks

        names = list_tasks()
    print("\n".join(names))
    return 0


def _smoke(args: argparse.Namespace, extra: list[str], parser) -> int:
    from ttt_video.apps.smoke import MIN_TOKENS, run_smoke, summary

    if args.tokens < MIN_TOKENS:
        parser.error(
            f"--tokens must be at least {MIN_TOKENS} (the summary averages 256 tokens on each "
            "side of the change at the middle)"
        )
    metrics = run_smoke(Path(args.out), seed=args.seed, T=args.tokens)
    print(summary(metrics, Path(args.out)))
    return 0


def _add_tools(sub) -> None:
    p = sub.add_parser(
        "export",
        help="a run checkpoint -> a folder with config.json, model.safetensors and a model card",
    )
    p.add_argument("--ckpt", "--ckpt_path", required=True, help="a run checkpoint (.ckpt)")
    p.add_argument("--out", required=True, help="folder to write")
    p.set_defaults(func=_export)
    p = sub.add_parser(
        "prepare",
        help="prepare a dataset into the cache folder (mnist, austen, clips, text, index, all)",
        description="Each preparation is idempotent and takes its own flags: "
        "ttt-video prepare austen --tokenizer bpe --vocab_size 4096; ttt-video prepare text --help",
        add_help=False,
    )
    p.add_argument("dataset", choices=("mnist", "austen", "clips", "text", "index", "all"))
    p.set_defaults(func=_prepare, overrides=True)
    p = sub.add_parser("list", help="names of the model presets, shipped configs or tasks")
    p.add_argument("what", choices=("models", "configs", "tasks"))
    p.set_defaults(func=_list)
    p = sub.add_parser(
        "smoke",
        help="one-minute end-to-end check of the kernels (dual == naive, learning at test time, speed)",
        description="Checks the dual form against the primal form, shows TTT layers learning a "
        "drifting stream at test time (plot), and measures speed. Example: ttt-video smoke --out runs/smoke",
    )
    p.add_argument("--out", default="runs/smoke", help="run folder (default: runs/smoke)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokens", type=int, default=4096, help="length of the drifting stream")
    p.set_defaults(func=_smoke)


def build_parser() -> argparse.ArgumentParser:
    """The ``ttt-video`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ttt-video",
        description="Test-Time Training layers for long sequences and long video.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_quickstart(sub)
    _add_training(sub)
    _add_lm(sub)
    _add_demo(sub)
    _add_tools(sub)
    parser.set_defaults(overrides=False, parser=parser)
    return parser


class ProgressBarSafeHandler(logging.Handler):
    """Writes the library's log records through ``tqdm.write``, which lifts the progress bars
    of the terminal (training's, data preparation's) off the line first, so a warning such as
    "skipping FILE: reason" gets a line of its own instead of being glued to a bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def log_above_progress_bars() -> None:
    """Write the ``ttt_video`` loggers' warnings through :class:`ProgressBarSafeHandler`
    (once; in the command line's processes only: a library user's logging stays theirs).
    Records still propagate to the root logger's handlers, if any were set up."""
    logger = logging.getLogger("ttt_video")
    if not any(isinstance(h, ProgressBarSafeHandler) for h in logger.handlers):
        logger.addHandler(ProgressBarSafeHandler(logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ttt-video``; returns the exit status."""
    log_above_progress_bars()
    parser = build_parser()
    args, extra = parser.parse_known_args(normalize_flags(argv))
    if extra and not args.overrides:
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args, extra, args.parser)
    except USER_ERRORS as err:
        print(f"ttt-video {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        if args.command not in ("demo", "prepare", "export", "generate", "eval-lm", "validate"):
            raise
        print(f"ttt-video {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
