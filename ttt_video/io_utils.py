"""What the runner and the apps share to write files and measure themselves: atomic writes,
JSON files, matplotlib without a display, the process's resident memory."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``path`` only once the block ends without an error.

    Writes go to a hidden temporary file next to ``path``, which is flushed to disk and
    renamed over ``path``; on an error it is removed and ``path`` is left as it was, so a
    crash never leaves a truncated file under the final name.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through :func:`atomic_open`."""
    with atomic_open(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (atomically)."""
    return write_atomic(path, json.dumps(data, indent=2) + "\n")


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rss_bytes() -> int:
    """Resident memory of this process in bytes (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
