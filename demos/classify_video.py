"""Demo: `ttt-video demo classify` as a script. Run with --help for the options and an example.

python demos/classify_video.py FILE [options]
"""

import sys

from ttt_video.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", "classify", *sys.argv[1:]]))
