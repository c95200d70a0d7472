"""``ttt-video prepare austen``, as a script: ``python data_prep/austen.py --help``."""

import sys

from ttt_video.apps.prepare import run_prepare

if __name__ == "__main__":
    sys.exit(run_prepare("austen", sys.argv[1:]))
