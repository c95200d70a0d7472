"""Index a folder of videos: probe every file, write a manifest (CSV or JSON) and the frame index.

Each row holds the path (relative to the folder), an empty label to fill in (or the class folder
name with --class_folders), and the measured fps, frames, duration, size and codec, or
decodable=false with the reason. Rewrites the manifest on every run (idempotent).

The frame index of every readable video (each frame's timestamp and keyframe flag) goes to
ROOT/.frame_index/, one .npz per video: readers and DataLoader workers then read it instead of
demuxing the file again. A re-run reuses the entries of unchanged videos and rebuilds those of
videos that changed size or modification time (readers do the same, and write entries of new
videos there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ttt_video.apps.flags import normalize_flags, prepare_parser
from ttt_video.data.video.frame_index import INDEX_DIR, clear_index_cache
from ttt_video.data.video.manifest import find_videos, probe_row, write_manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = prepare_parser("index", __doc__)
    p.add_argument("root", type=Path, help="folder to scan (recursively)")
    p.add_argument(
        "--out", type=Path, default=None, help="manifest path (default: ROOT/manifest.csv)"
    )
    p.add_argument("--class_folders", action="store_true", help="label = first folder under ROOT")
    return p.parse_args(normalize_flags(argv))


def main(argv: list[str] | None = None) -> int:
    """Probe every video under the root, writing its frame index, then the manifest; print a
    summary."""
    args = parse_args(argv)
    if not args.root.is_dir():
        what = "not a folder" if args.root.exists() else "not found"
        raise FileNotFoundError(f"{args.root}: {what} (index scans a folder of videos)")
    out = args.out or args.root / "manifest.csv"
    (args.root / INDEX_DIR).mkdir(parents=True, exist_ok=True)
    clear_index_cache()  # probing now finds the index folder and writes each video's entry
    rows = []
    for path in tqdm(find_videos(args.root), desc="probe"):
        row = probe_row(path, args.root)
        if args.class_folders and len(path.relative_to(args.root).parts) > 1:
            row["label"] = path.relative_to(args.root).parts[0]
        rows.append(row)
    write_manifest(rows, out)
    bad = [r for r in rows if not r["decodable"]]
    print(f"{out}: {len(rows)} videos, {len(rows) - len(bad)} decodable, {len(bad)} not")
    print(f"frame index: {args.root / INDEX_DIR}")
    for r in bad:
        print(f"  {r['path']}: {r['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
