"""Lists of videos: a folder per class (UCF101/HMDB style) or a CSV/JSON manifest, and probing.

A manifest row is ``path, label[, start, end]``: label an int class index or a class name (or
empty for unlabelled prediction data), start/end optional clip bounds in seconds. Relative paths
are taken from the manifest's folder.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ttt_video.data.video.errors import VideoReadError
from ttt_video.data.video.reader import probe_video

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".mpg", ".mpeg", ".m4v")


@dataclass(frozen=True)
class VideoItem:
    """One video of a dataset: ``label`` -1 when unlabelled; ``start``/``end`` in seconds."""

    path: str
    label: int = -1
    start: float | None = None
    end: float | None = None


def find_videos(root: str | Path, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Every file under ``root`` whose suffix is in ``extensions``, sorted."""
    exts = {e.lower() for e in extensions}
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in exts)


def scan_class_folders(root: str | Path) -> tuple[list[VideoItem], list[str]]:
    """``root/<class>/**/video`` -> (items labelled by sorted class index, class names).

    Hidden folders (``.frame_index``, the frame index ``ttt-video prepare index`` writes) are
    not classes.
    """
    root = Path(root)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    items = [
        VideoItem(str(p), label)
        for label, name in enumerate(classes)
        for p in find_videos(root / name)
    ]
    return items, classes


def _float(value) -> float | None:
    return None if value in (None, "") else float(value)


def read_manifest(path: str | Path) -> tuple[list[VideoItem], list[str]]:
    """Read a ``.csv`` (header ``path,label[,start,end]``) or ``.json`` (list of objects) manifest.

    Rows that ``ttt-video prepare index`` marked ``decodable=False`` are left out (one warning
    counts them). Returns (items, class names); string labels are mapped to sorted class
    indices. ``ValueError`` for a file that is not a manifest (a video, binary, no ``path``).
    """
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".csv", ".json"):
        video = " (a video file: give the folder it is in)" if kind in VIDEO_EXTENSIONS else ""
        raise ValueError(f"{path}: expected a folder of videos or a .csv/.json manifest{video}")
    try:
        if kind == ".json":
            rows = json.loads(path.read_text())
        else:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a text manifest ({err.reason} at byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a JSON manifest ({err})") from err
    if rows and "path" not in rows[0]:
        raise ValueError(f"{path}: manifest rows need a 'path' field, got {sorted(rows[0])}")
    bad = [r for r in rows if str(r.get("decodable", "")).lower() in ("false", "0")]
    if bad:
        log.warning(
            "%s: leaving out %d rows marked decodable=False (first: %s: %s)",
            path, len(bad), bad[0]["path"], bad[0].get("error") or "no reason given",
        )  # fmt: skip
        rows = [r for r in rows if r not in bad]
    names = sorted({str(r["label"]) for r in rows if _is_name(r.get("label"))})
    index = {name: i for i, name in enumerate(names)}
    items = []
    for r in rows:
        label = r.get("label")
        label = (
            index[str(label)] if _is_name(label) else int(label) if label not in (None, "") else -1
        )
        file = Path(r["path"]) if Path(r["path"]).is_absolute() else path.parent / r["path"]
        items.append(VideoItem(str(file), label, _float(r.get("start")), _float(r.get("end"))))
    return items, names


def _is_name(label) -> bool:
    """A label given as a class name rather than an integer index."""
    if label in (None, ""):
        return False
    try:
        int(label)
    except (TypeError, ValueError):
        return True
    return False


def load_items(source: str | Path) -> tuple[list[VideoItem], list[str]]:
    """A class-folder root or a manifest file -> (items, class names)."""
    source = Path(source)
    return scan_class_folders(source) if source.is_dir() else read_manifest(source)


def probe_row(path: Path, root: Path) -> dict:
    """One manifest row for ``path``: its measured metadata, or ``decodable=False`` and why."""
    row = {"path": str(path.relative_to(root)), "label": ""}
    try:
        info = probe_video(path)
    except VideoReadError as err:
        return {**row, "decodable": False, "error": err.reason}
    meta = {k: v for k, v in asdict(info).items() if k != "path"}
    meta["fps"], meta["duration"] = round(info.fps, 4), round(info.duration, 4)
    return {
        **row,
        **meta,
        "decodable": not info.truncated,
        "error": "truncated" if info.truncated else "",
    }


def write_manifest(rows: list[dict], path: str | Path) -> Path:
    """Write rows (dicts with at least ``path``) as ``.csv`` or ``.json`` by the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows, indent=1))
        return path
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path
