"""Long-range recall: validation and test show held-out digits only, and no trainer seed makes a
training sequence repeat an evaluation one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ttt_video.data.synthetic import long_range
from ttt_video.data.synthetic.long_range import (
    LongRangeConfig,
    LongRangeDataModule,
    LongRangeDigits,
)
from ttt_video.data.synthetic.moving_mnist import split_digits

CFG = LongRangeConfig(distance=2, cue_frames=1, size=28)


@pytest.fixture
def numbered_digits(monkeypatch) -> np.ndarray:
    """Replace the real digits by 200 (20 per class) whose pixels all hold ``index + 1``."""
    images = (np.arange(200, dtype=np.uint8) + 1)[:, None, None].repeat(28, 1).repeat(28, 2)
    labels = np.arange(200) % 10
    monkeypatch.setattr(long_range, "load_mnist_digits", lambda: (images, labels))
    return labels


def cue_digits(dataset: LongRangeDigits) -> set[int]:
    """Indices of the digits shown as cues by the dataset's items."""
    return {int(dataset[i]["frames"][0, 0, 0, 0]) - 1 for i in range(len(dataset))}


def test_val_and_test_cues_are_digits_training_never_shows(numbered_digits):
    cues = {s: cue_digits(LongRangeDigits(CFG, s, length=100)) for s in ("train", "val", "test")}
    train_pool = set(split_digits(numbered_digits)[0].tolist())  # 80%, stratified
    assert cues["train"] <= train_pool
    assert not cues["val"] & train_pool and not cues["test"] & train_pool
    assert not cues["val"] & cues["test"]
    for shown in cues.values():  # every class in every split
        assert set(numbered_digits[sorted(shown)].tolist()) == set(range(10))


def test_no_trainer_seed_or_epoch_repeats_an_evaluation_sequence():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (30, 28, 28), dtype=np.uint8)
    labels = np.arange(30) % 10
    n = 6

    def items(split: str, seed: int = 0, epoch: int = 0) -> list[torch.Tensor]:
        ds = LongRangeDigits(CFG, split, n, seed, images=images, labels=labels)  # one pool for all
        return [ds[epoch * n + i]["frames"] for i in range(n)]

    evaluation = items("val") + items("test")
    for seed in range(4):
        for epoch in range(3):
            for train in items("train", seed, epoch):
                assert not any(torch.equal(train, e) for e in evaluation), (seed, epoch)


def test_evaluation_sets_do_not_follow_the_trainer_seed(numbered_digits):
    modules = [LongRangeDataModule(CFG, eval_length=5, seed=seed) for seed in (0, 7)]
    for dm in modules:
        dm.setup("fit")
    for split in ("val", "test"):
        first, second = (getattr(dm, split) for dm in modules)
        assert all(torch.equal(first[i]["frames"], second[i]["frames"]) for i in range(5))
    assert not torch.equal(modules[0].train[0]["frames"], modules[1].train[0]["frames"])
