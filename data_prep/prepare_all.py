"""Prepare every dataset the test suite and the quickstart read, into the cache folder.

Runs, in order (each idempotent: a second run writes nothing):
``austen.py`` (the books corpus), ``moving_mnist.py`` (digits + fixed sets),
``fetch_clips.py`` (the real clips of DATA.md). Needs only PyPI and Debian's package
archive. The cache folder is ``$TTT_VIDEO_CACHE`` or ``~/.cache/ttt_video``.

    python data_prep/prepare_all.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = ("austen.py", "moving_mnist.py", "fetch_clips.py")


def main() -> int:
    here = Path(__file__).resolve().parent
    for name in SCRIPTS:
        print(f"== data_prep/{name}", flush=True)
        result = subprocess.run([sys.executable, str(here / name)])
        if result.returncode != 0:
            print(f"data_prep/{name} failed (exit {result.returncode})", file=sys.stderr)
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
