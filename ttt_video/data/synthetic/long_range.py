"""Long-range recall on video: the label is shown at the start, then hundreds of distractor frames.

Letters: F = cue_frames + distance frames, S frame side.

A sequence opens with ``cue_frames`` frames of one real MNIST digit held still in the centre; its
class is the label. Then come ``distance`` frames of other digits bouncing (Moving-MNIST-style),
drawn from all classes, so nothing after the cue tells the label. A model that classifies the
last frame's state correctly must have carried the cue across ``distance`` frames; chance is 10%.

Digits: the 5,000 real digits are split three ways, stratified by class (``digit_pools``): 80%
for training, and the held-out 20% halved into a validation and a test pool, so validation
and test sequences (cue and distractors) show only digits training never saw, and the test
digits are not those the best checkpoint was chosen on. Validation and test sequences are the
same whatever the trainer seed (their streams use ``EVAL_SEED``); training sequences come from
the trainer seed's own streams (``ttt_video.data.epochs``), which never coincide with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ttt_video.data.epochs import SPLIT_STREAMS, EpochDataModule, item_rng
from ttt_video.data.fetch import load_mnist_digits
from ttt_video.data.synthetic.moving_mnist import moving_digits, split_digits

EVAL_SEED = 0
"""Entropy of the validation and test streams (fixed: the sets do not follow the trainer seed)."""
CLASS_NAMES = [str(d) for d in range(10)]
"""The labels' names: the digits."""


@dataclass(frozen=True)
class LongRangeConfig:
    """One long-range recall task.

    Attributes:
        distance: distractor frames after the cue (the memory span tested).
        cue_frames: frames showing the label digit.
        size: frame side ``S``.
        num_distractors: moving digits per distractor frame.
    """

    distance: int = 500
    cue_frames: int = 4
    size: int = 64
    num_distractors: int = 2

    def __post_init__(self):
        if self.distance < 0 or self.cue_frames < 1 or self.size < 28:
            raise ValueError(f"need distance >= 0, cue_frames >= 1, size >= 28; got {self}")

    @property
    def num_frames(self) -> int:
        """Frames per sequence."""
        return self.cue_frames + self.distance


def recall_sequence(
    rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, cfg: LongRangeConfig
) -> tuple[np.ndarray, int]:
    """One sequence: (frames uint8 ``[F, S, S]``, label) from digits ``images [K, 28, 28]``."""
    label = int(rng.integers(0, 10))
    choices = np.nonzero(labels == label)[0]
    cue = images[choices[rng.integers(0, len(choices))]]
    frames = np.zeros((cfg.num_frames, cfg.size, cfg.size), dtype=np.uint8)
    top = (cfg.size - cue.shape[0]) // 2
    frames[: cfg.cue_frames, top : top + cue.shape[0], top : top + cue.shape[1]] = cue
    if cfg.distance:
        frames[cfg.cue_frames :] = moving_digits(
            rng, images, cfg.distance, cfg.num_distractors, cfg.size
        )
    return frames, label


def digit_pools(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Disjoint digit indices per split, each stratified by class: ``{"train": [K_train],
    "val": [K_val], "test": [K_test]}`` (80% / 10% / 10%) from the labels ``[K]``."""
    train, held_out = split_digits(labels)
    val, test = split_digits(labels[held_out], test_fraction=0.5)
    return {"train": train, "val": held_out[val], "test": held_out[test]}


class LongRangeDigits(Dataset):
    """Items ``{"frames": uint8 [F, 1, S, S], "label": int}`` from the ``split``'s digit pool.

    ``split="train"`` changes every epoch (through ``EpochSampler``) and follows ``seed``;
    ``"val"``/``"test"`` are fixed. ``images [K, 28, 28]``/``labels [K]`` replace the split's
    pool of real digits (e.g. in tests).
    """

    def __init__(
        self,
        cfg: LongRangeConfig | None = None,
        split: str = "train",
        length: int = 2000,
        seed: int = 0,
        images: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ):
        if split not in SPLIT_STREAMS:
            raise ValueError(f"split must be train, val or test, got {split!r}")
        self.cfg, self.split, self.length = cfg or LongRangeConfig(), split, length
        self.seed = seed if split == "train" else EVAL_SEED
        if images is None:
            images, labels = load_mnist_digits()
            pick = digit_pools(labels)[split]
            images, labels = images[pick], labels[pick]
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = item_rng(self.seed, index, self.length, self.split)
        frames, label = recall_sequence(rng, self.images, self.labels, self.cfg)
        return {"frames": torch.from_numpy(frames).unsqueeze(1), "label": label}


class LongRangeDataModule(EpochDataModule):
    """Train / val / test loaders of ``LongRangeDigits`` at one ``distance``."""

    classes = CLASS_NAMES

    def __init__(
        self,
        cfg: LongRangeConfig | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        train_length: int = 2000,
        eval_length: int = 500,
        seed: int = 0,
    ):
        super().__init__(batch_size, num_workers, seed)
        self.cfg = cfg or LongRangeConfig()
        self.train_length, self.eval_length = train_length, eval_length

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs."""
        self.train = LongRangeDigits(self.cfg, "train", self.train_length, self.seed)
        self.val = LongRangeDigits(self.cfg, "val", self.eval_length)
        self.test = LongRangeDigits(self.cfg, "test", self.eval_length)
