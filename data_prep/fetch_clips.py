"""``ttt-video prepare clips``, as a script: ``python data_prep/fetch_clips.py --help``."""

import sys

from ttt_video.apps.prepare import run_prepare

if __name__ == "__main__":
    sys.exit(run_prepare("clips", sys.argv[1:]))
