"""Moving-MNIST-style video from the real MNIST digits: generator, fixed sets, dataset, DataModule.

Letters: N sequences, F frames per sequence (T_in inputs then T_out targets), S frame side (64).

Two digits bounce inside an ``S x S`` frame, drawn with per-pixel max. This is generated data in
the style of Moving MNIST, not the official test file (no package ships it); report it as such.
Train and validation draw digits from one pool, test from a disjoint pool (a stratified split of
the 5,000 digits). Validation and test are fixed ``.npy`` files (uint8 ``[N, F, S, S]``) so
numbers are comparable across runs; training sequences are generated on the fly from
``(seed, epoch, index)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ttt_video.data.epochs import EpochDataModule, item_rng
from ttt_video.data.fetch import load_mnist_digits
from ttt_video.io_utils import atomic_open
from ttt_video.paths import cache_dir


@dataclass(frozen=True)
class MovingMNISTVariant:
    """One protocol: ``num_input`` frames in, ``num_output`` out, fixed set sizes."""

    num_input: int
    num_output: int
    num_val: int
    num_test: int

    @property
    def num_frames(self) -> int:
        """Frames per sequence (inputs + targets)."""
        return self.num_input + self.num_output


VARIANTS = {  # context40/90: a long context, the 10-frame horizon of standard
    "standard": MovingMNISTVariant(10, 10, num_val=1000, num_test=2000),
    "context40": MovingMNISTVariant(40, 10, num_val=250, num_test=500),
    "context90": MovingMNISTVariant(90, 10, num_val=250, num_test=500),
    "long200": MovingMNISTVariant(100, 100, num_val=100, num_test=200),
    "long1000": MovingMNISTVariant(500, 500, num_val=20, num_test=50),
}
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def split_digits(labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0):
    """Stratified disjoint split of digit indices: (train ``[K_train]``, test ``[K_test]``)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.nonzero(labels == c)[0])
        cut = int(round(len(idx) * test_fraction))
        test.append(idx[:cut])
        train.append(idx[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def bounce_paths(rng: np.random.Generator, num_frames: int, span: int, count: int) -> np.ndarray:
    """Top-left corners int ``[count, F, 2]`` of ``count`` objects bouncing in ``[0, span]``.

    Each starts at a uniform position with speed 2..5 px/frame in a uniform direction and
    reflects off the walls.
    """
    pos = rng.uniform(0, span, size=(count, 2))
    angle = rng.uniform(0, 2 * np.pi, size=count)
    vel = rng.uniform(2, 5, size=(count, 1)) * np.stack([np.sin(angle), np.cos(angle)], axis=1)
    out = np.empty((count, num_frames, 2), dtype=np.int64)
    for t in range(num_frames):
        out[:, t] = np.round(pos)
        pos = pos + vel
        low, high = pos < 0, pos > span
        pos = np.where(low, -pos, np.where(high, 2 * span - pos, pos))
        pos = np.clip(pos, 0, span)  # a step longer than the span would reflect out of range
        vel = np.where(low | high, -vel, vel)
    return out


def draw(frames: np.ndarray, digit: np.ndarray, corners: np.ndarray) -> None:
    """Max-composite ``digit [d, d]`` into ``frames [F, S, S]`` at per-frame ``corners [F, 2]``."""
    d = digit.shape[0]
    for t, (y, x) in enumerate(corners):
        np.maximum(frames[t, y : y + d, x : x + d], digit, out=frames[t, y : y + d, x : x + d])


def moving_digits(
    rng: np.random.Generator,
    images: np.ndarray,
    num_frames: int,
    num_digits: int = 2,
    size: int = 64,
) -> np.ndarray:
    """One sequence uint8 ``[F, S, S]``: ``num_digits`` digits from ``images [K, d, d]`` bouncing."""
    frames = np.zeros((num_frames, size, size), dtype=np.uint8)
    picks = rng.integers(0, len(images), size=num_digits)
    paths = bounce_paths(rng, num_frames, size - images.shape[1], num_digits)
    for k in range(num_digits):
        draw(frames, images[picks[k]], paths[k])
    return frames


def fixed_set_path(variant: str, split: str, root: Path | None = None) -> Path:
    """``<root or cache>/moving_mnist/<variant>_<split>.npy``."""
    return Path(root or cache_dir("moving_mnist")) / f"{variant}_{split}.npy"


def build_fixed_set(variant: str, split: str, root: Path | None = None, progress=None) -> Path:
    """Write the fixed ``split`` ("val" or "test") of ``variant``: uint8 ``[N, F, 64, 64]`` .npy.

    Deterministic (seeded per sequence) and idempotent: an existing file is kept. Written
    through ``atomic_open``: an interrupted build leaves nothing, and builders running at
    once each write their own file and move it into place (the same bytes).
    ``progress`` wraps the range of sequences (e.g. ``tqdm``).
    """
    path = fixed_set_path(variant, split, root)
    if path.exists():
        return path
    v = VARIANTS[variant]
    images, labels = load_mnist_digits()
    train_idx, test_idx = split_digits(labels)
    pool = images[test_idx if split == "test" else train_idx]
    n = v.num_test if split == "test" else v.num_val
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"descr": "|u1", "fortran_order": False, "shape": (n, v.num_frames, 64, 64)}
    with atomic_open(path) as f:  # a sequence at a time, never the whole set in memory
        np.lib.format.write_array_header_1_0(f, header)
        for i in (progress or iter)(range(n)):
            rng = np.random.default_rng([SPLIT_SEEDS[split], i])
            f.write(moving_digits(rng, pool, v.num_frames).tobytes())
    return path


class MovingMNIST(Dataset):
    """Moving-MNIST-style sequences as items ``{"frames": uint8 [F, 1, 64, 64]}`` (the first
    ``num_input`` frames are the context of the protocol, the rest its targets).

    ``split="train"`` generates on the fly (``length`` items per epoch, from ``(seed, epoch, i)``
    when indexed through ``EpochSampler``); ``"val"``/``"test"`` read the fixed ``.npy`` files.
    ``images`` overrides the real digits (e.g. synthetic shapes in tests).
    """

    def __init__(
        self,
        variant: str = "standard",
        split: str = "train",
        length: int = 10_000,
        seed: int = 0,
        root: Path | None = None,
        images: np.ndarray | None = None,
    ):
        if variant not in VARIANTS or split not in SPLIT_SEEDS:
            raise ValueError(
                f"variant in {sorted(VARIANTS)}, split in train/val/test; got {variant}/{split}"
            )
        self.variant, self.split, self.seed = VARIANTS[variant], split, seed
        self.data: np.ndarray | None = None
        if split == "train":
            if images is None:
                all_images, labels = load_mnist_digits()
                images = all_images[split_digits(labels)[0]]
            self.images, self.length = images, length
        else:
            path = fixed_set_path(variant, split, root)
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: run `ttt-video prepare mnist`")
            self.data = np.load(path, mmap_mode="r")
            self.length = len(self.data)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.data is not None:
            frames = np.array(self.data[index])
        else:
            rng = item_rng(self.seed, index, self.length)
            frames = moving_digits(rng, self.images, self.variant.num_frames)
        return {"frames": torch.from_numpy(frames).unsqueeze(1)}


class MovingMNISTDataModule(EpochDataModule):
    """Train (on the fly, reshuffled and regenerated each epoch), val and test (fixed files)."""

    def __init__(
        self,
        variant: str = "standard",
        batch_size: int = 16,
        num_workers: int = 0,
        train_length: int = 10_000,
        seed: int = 0,
        root: Path | None = None,
    ):
        super().__init__(batch_size, num_workers, seed)
        self.variant, self.train_length, self.root = variant, train_length, root

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs."""
        if stage in (None, "fit"):
            self.train = MovingMNIST(self.variant, "train", self.train_length, self.seed)
        if stage in (None, "fit", "validate"):
            self.val = MovingMNIST(self.variant, "val", root=self.root)
        if stage in (None, "test"):
            self.test = MovingMNIST(self.variant, "test", root=self.root)
