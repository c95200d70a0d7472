"""Build the offline "books" corpus: Jane Austen's six novels, tokenised into shards.

Fetches Debian's ``r-cran-janeaustenr`` (``apt-get download``, no install, no R),
decodes its R data with the standard library, writes one text file per novel
and one JSONL document per chapter, then tokenises (byte-level by default,
10% of chapters held out for validation). Idempotent. Output under
``cache_dir("text", "austen")``: ``raw/``, ``chapters/``, ``byte/`` (or ``bpe<V>/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ttt_video.apps.flags import normalize_flags, prepare_parser
from ttt_video.data.text.austen import AustenOptions, build_austen, novel_token_counts
from ttt_video.data.text.shards import TextPrepOptions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = prepare_parser("austen", __doc__)
    p.add_argument("--root", type=Path, default=None, help="default: the cache folder")
    p.add_argument("--package_data", type=Path, default=None, help="extracted janeaustenr/data")
    p.add_argument("--tokenizer", default="byte", help="byte | bpe | tokenizer.json path")
    p.add_argument("--vocab_size", type=int, default=8192, help="BPE only")
    p.add_argument("--val_fraction", type=float, default=0.1)
    p.add_argument("--shard_tokens", type=int, default=1 << 25)
    return p.parse_args(normalize_flags(argv))


def main(argv: list[str] | None = None) -> int:
    """Build the corpus and print characters and tokens per novel and per split."""
    args = parse_args(argv)
    prep = TextPrepOptions(
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        val_fraction=args.val_fraction,
        shard_tokens=args.shard_tokens,
    )
    result = build_austen(AustenOptions(args.root, args.package_data, prep))
    print(f"{'novel':<18}{'characters':>12}{'chapters':>10}{'val ch.':>9}{'tokens':>12}")
    for novel, row in novel_token_counts(result.folder.parent, result).items():
        print(
            f"{novel:<18}{row['characters']:>12,}{row['chapters']:>10}"
            f"{row['val_chapters']:>9}{row['tokens']:>12,}"
        )
    for split, s in result.meta["splits"].items():
        print(
            f"{split}: {s['tokens']:,} tokens, {s['documents']} chapters, {s['characters']:,} chars"
        )
    print(f"shards: {result.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
