"""What the runner and the apps share to write files and measure themselves: atomic writes,
JSON files, matplotlib without a display, the resident memory of this process or of a child."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``path`` only once the block ends without an error.

    Writes go to a hidden temporary file next to ``path`` (its own for every call, so that
    writers of one path at the same time never share one), which is flushed to disk and
    renamed over ``path``; on an error it is removed and ``path`` is left as it was, so a
    crash never leaves a truncated file under the final name.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}")
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


_LAUNCHER = """import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""
"""Runs a command and writes its exit status and peak RSS (``ru_maxrss``) to a file."""


def run_peak_rss(argv: list[str], **popen: Any) -> tuple[int, int]:
    """Run ``argv`` in a fresh process and wait for it: ``(exit status, its peak resident memory
    in bytes)``, the kernel's high-water mark of that process and of the children it waited for
    (``os.wait4``; POSIX). ``popen`` goes to ``subprocess.run`` (``env``, ``stdout``, ...).

    A small launcher process starts the command: Linux counts the pages a process shares with
    its parent until ``exec`` in its peak, so a command started from a large process (one that
    imported torch, say) would report at least that process's size.
    """
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "rusage"
        subprocess.run([sys.executable, "-c", _LAUNCHER, str(result), *argv], **popen)
        code, peak = result.read_text().split()
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return int(code), int(peak) * scale
