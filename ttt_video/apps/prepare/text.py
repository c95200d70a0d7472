"""Tokenise a text corpus (.txt, .jsonl, .jsonl.zst files or folders) into token shards.

Example::

    ttt-video prepare text --input corpus/ --out shards/ --tokenizer byte

Re-running with the same inputs and options writes nothing. See ``ttt_video.data.text.shards``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from ttt_video.apps.flags import normalize_flags, prepare_parser
from ttt_video.data.text.corpus import CorpusError
from ttt_video.data.text.shards import TextPrepOptions, prepare_text
from ttt_video.data.text.tokenizers import TokenizerError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults come from :class:`TextPrepOptions`."""
    defaults = {f.name: f.default for f in fields(TextPrepOptions)}
    p = prepare_parser("text", __doc__)
    p.add_argument("--input", nargs="+", required=True, help="corpus files and/or folders")
    p.add_argument("--out", required=True, help="output shard folder")
    p.add_argument(
        "--tokenizer",
        default=defaults["tokenizer"],
        help="byte | bpe | path to a tokenizer.json or HuggingFace tokenizer folder",
    )
    p.add_argument("--vocab_size", type=int, default=defaults["vocab_size"], help="BPE only")
    p.add_argument("--val_fraction", type=float, default=defaults["val_fraction"])
    p.add_argument("--split_seed", type=int, default=defaults["split_seed"])
    p.add_argument("--shard_tokens", type=int, default=defaults["shard_tokens"])
    p.add_argument("--dtype", choices=["uint16", "uint32"], default=None, help="default: auto")
    p.add_argument("--text_field", default=defaults["text_field"], help="JSONL text field")
    p.add_argument("--overwrite", action="store_true", help="replace an out-of-date --out")
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(normalize_flags(argv))


def main(argv: list[str] | None = None) -> int:
    """Run the tokenisation; exit status 2 on a corpus or tokenizer error."""
    args = parse_args(argv)
    options = TextPrepOptions(
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        val_fraction=args.val_fraction,
        split_seed=args.split_seed,
        shard_tokens=args.shard_tokens,
        dtype=args.dtype,
        text_field=args.text_field,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    try:
        prepare_text(args.input, args.out, options)
    except (CorpusError, TokenizerError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
