"""``ttt-video prepare mnist``, as a script: ``python data_prep/moving_mnist.py --help``."""

import sys

from ttt_video.apps.prepare import run_prepare

if __name__ == "__main__":
    sys.exit(run_prepare("mnist", sys.argv[1:]))
