"""``ttt-video prepare all``, as a script: ``python data_prep/prepare_all.py --help``."""

import sys

from ttt_video.apps.prepare import run_prepare

if __name__ == "__main__":
    sys.exit(run_prepare("all", sys.argv[1:]))
