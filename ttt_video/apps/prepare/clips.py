"""Fetch the real video clips named in docs/data.md into ``cache_dir("clips")`` and probe them.

vtest.avi and tree.avi come from the Debian ``opencv-doc`` package, cockatoo.mp4 and
realshort.mp4 from ``python3-imageio``; each package is downloaded (``apt-get download``, not
installed) and unpacked into a temporary folder only when one of its clips is missing.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ttt_video.apps.flags import normalize_flags, prepare_parser
from ttt_video.data.fetch import CLIPS, fetch_clips
from ttt_video.data.video.reader import probe_video


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = prepare_parser("clips", __doc__)
    p.add_argument("--names", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    return p.parse_args(normalize_flags(argv))


def main(argv: list[str] | None = None) -> int:
    """Fetch the clips and print each one's measured metadata."""
    args = parse_args(argv)
    paths = fetch_clips(names=args.names)
    for path in tqdm(paths.values(), desc="probe", total=len(paths)):
        info = probe_video(path)
        tqdm.write(
            f"{path}: {info.num_frames} frames, {info.fps:.2f} fps, {info.duration:.1f} s, "
            f"{info.width}x{info.height}, {info.codec}, truncated={info.truncated}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
