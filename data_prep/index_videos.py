"""``ttt-video prepare index``, as a script: ``python data_prep/index_videos.py --help``."""

import sys

from ttt_video.apps.prepare import run_prepare

if __name__ == "__main__":
    sys.exit(run_prepare("index", sys.argv[1:]))
