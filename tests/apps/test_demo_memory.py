"""The demos' peak memory does not grow with the video (the small version of
benchmarks/demo_memory.py): a 20-second and a 2-minute file of the same kind, each demo run on
the short file, then on the long one, in this process with the kernel's peak-RSS mark reset
before each run (Linux ``/proc/self/clear_refs``).

The bound: half of what holding the long file's extra frames once would take (uint8, at their
native size). A demo that keeps every decoded frame, in any form, grows by at least twice
that; one that streams holds a chunk of frames whatever the length.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ttt_video.apps.demo import FitOptions, classify_demo, predict_demo, stream_demo
from ttt_video.data.fetch import mnist_path
from ttt_video.data.synthetic.patterns import write_pattern_video
from ttt_video.data.video.frames import FrameFormat
from ttt_video.data.video.windows import VideoFileDataModule
from ttt_video.io_utils import rss_bytes, run_peak_rss
from ttt_video.train.runner import fit
from ttt_video.train.tasks import load_run_config

ROOT = Path(__file__).resolve().parents[2]
SHORT_S, LONG_S, FPS, HEIGHT, WIDTH = 20, 120, 10, 120, 160
BOUND = (LONG_S - SHORT_S) * FPS * HEIGHT * WIDTH * 3 / 2
CLEAR_REFS = Path("/proc/self/clear_refs")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CLEAR_REFS.exists(), reason="needs Linux /proc/self/clear_refs"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The 20-second and the 2-minute pattern video, 160x120 at 10 fps."""
    root = tmp_path_factory.mktemp("patterns")
    return {
        name: write_pattern_video(root / f"{name}.mp4", seconds, FPS, HEIGHT, WIDTH)
        for name, seconds in (("short", SHORT_S), ("long", LONG_S))
    }


def peak_rss(run) -> int:
    """Peak resident memory (bytes) of this process while ``run()`` runs: the kernel's mark is
    reset to the current RSS first (writing 5 to ``clear_refs``), then read (``VmHWM``)."""
    CLEAR_REFS.write_text("5")
    run()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def growth(run, files) -> float:
    """Peak of ``run(long file)`` minus peak of ``run(short file)``, in bytes."""
    short = peak_rss(lambda: run(files["short"]))
    return peak_rss(lambda: run(files["long"])) - short


def test_predict_memory_does_not_grow_with_the_video(files, tmp_path):
    fit = FitOptions(size=32, max_steps=1)
    extra = growth(lambda path: predict_demo(path, tmp_path, fit=fit, device="cpu"), files)
    assert extra < BOUND, f"{extra / 2**20:.0f} MiB more for the long file"


def test_stream_memory_does_not_grow_with_the_video(files, tmp_path):
    run = lambda path: stream_demo(path, tmp_path, size=32, chunk=4, device="cpu")  # noqa: E731
    extra = growth(run, files)
    assert extra < BOUND, f"{extra / 2**20:.0f} MiB more for the long file"


@pytest.mark.skipif(not mnist_path().exists(), reason="MNIST digits not prepared")
def test_classify_memory_does_not_grow_with_the_video(files, tmp_path):
    config = ROOT / "configs" / "video" / "long_range_ttt_linear_debug.yaml"
    overrides = {
        "out_dir": str(tmp_path / "train"),
        "trainer.max_steps": 1,
        "trainer.progress_bar": False,
        "data.distance": 8,
        "data.eval_length": 8,
    }
    run = load_run_config(config, overrides)
    fit(run)
    ckpt = run.run_dir / "checkpoints" / "last.ckpt"
    extra = growth(lambda path: classify_demo(path, ckpt, tmp_path, device="cpu"), files)
    assert extra < BOUND, f"{extra / 2**20:.0f} MiB more for the long file"


def test_file_windows_decode_one_window_at_a_time(files):
    """The fit's data: setting up and drawing batches from the long file at its native size."""

    def draw(path):
        data = VideoFileDataModule(path, FrameFormat(), num_frames=8, length=4, batch_size=2)
        data.setup("fit")
        for batch in data.train_dataloader():
            assert batch["frames"].shape == (2, 8, 3, HEIGHT, WIDTH)

    extra = growth(draw, files)
    assert extra < BOUND, f"{extra / 2**20:.0f} MiB more for the long file"


def test_child_peak_is_its_own_not_its_parents():
    """The benchmark's measure: a command started from this large process (torch imported,
    plus 200 MB here) reports its own peak, not the pages it shared with this one."""
    ballast = np.ones(25_000_000)  # 200 MB
    assert rss_bytes() > 2 * ballast.nbytes
    code, idle = run_peak_rss([sys.executable, "-c", "pass"])
    assert code == 0 and idle < 100e6
    code, busy = run_peak_rss(
        [sys.executable, "-c", "import numpy, sys; a = numpy.ones(25_000_000); sys.exit(3)"]
    )
    assert code == 3 and ballast.nbytes < busy < ballast.nbytes + 100e6
