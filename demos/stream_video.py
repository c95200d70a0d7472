"""Demo: `ttt-video demo stream` as a script. Run with --help for the options and an example.

python demos/stream_video.py FILE [options]
"""

import sys

from ttt_video.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", "stream", *sys.argv[1:]]))
