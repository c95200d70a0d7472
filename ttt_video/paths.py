"""Where prepared data lives: one cache folder, never inside git.

The folder is ``$TTT_VIDEO_CACHE`` when set, else ``~/.cache/ttt_video``.
``data_prep/`` scripts write there; datasets and tests read from there.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str, create: bool = False) -> Path:
    """Return ``<cache>/<parts...>``; create it when ``create`` is True."""
    root = Path(os.environ.get("TTT_VIDEO_CACHE", Path.home() / ".cache" / "ttt_video"))
    path = root.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
