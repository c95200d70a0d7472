"""``ttt-video prepare text``, as a script: ``python data_prep/tokenize_text.py --help``."""

import sys

from ttt_video.apps.prepare import run_prepare

if __name__ == "__main__":
    sys.exit(run_prepare("text", sys.argv[1:]))
