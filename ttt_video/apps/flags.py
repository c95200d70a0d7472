"""One flag style for every command: ``--max_new_tokens``, like the config overrides
(``--trainer.max_steps``) and Lightning's ``--print_config``.

The hyphenated spelling (``--max-new-tokens``) is accepted too: :func:`normalize_flags`
rewrites option names before parsing, so help texts show one style and old command lines
keep working.
"""

from __future__ import annotations

import argparse
import sys


def normalize_flags(argv: list[str] | None) -> list[str]:
    """``argv`` (default ``sys.argv[1:]``) with ``-`` turned into ``_`` in long option names.

    Values are left alone: ``--prompt --a-b`` is not an option name only when the parser
    says so, so only tokens that start with ``--`` and a letter are rewritten, up to ``=``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    out = []
    for token in argv:
        if token.startswith("--") and len(token) > 2 and token[2].isalpha():
            name, eq, value = token.partition("=")
            token = "--" + name[2:].replace("-", "_") + eq + value
        out.append(token)
    return out


def prepare_parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``ttt-video prepare NAME`` (also ``python data_prep/<script>.py``)."""
    return argparse.ArgumentParser(
        prog=f"ttt-video prepare {name}",
        description=doc,
        formatter_class=argparse.RawTextHelpFormatter,
    )
