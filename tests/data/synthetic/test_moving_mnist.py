"""Moving-MNIST-style generator, fixed sets, datasets, the long-range recall task, DataModules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ttt_video.data.epochs import EpochSampler
from ttt_video.data.fetch import mnist_path
from ttt_video.data.synthetic import moving_mnist
from ttt_video.data.synthetic.long_range import (
    LongRangeConfig,
    LongRangeDataModule,
    LongRangeDigits,
)
from ttt_video.data.synthetic.moving_mnist import (
    SPLIT_SEEDS,
    VARIANTS,
    MovingMNIST,
    MovingMNISTDataModule,
    MovingMNISTVariant,
    bounce_paths,
    build_fixed_set,
    fixed_set_path,
    moving_digits,
    split_digits,
)

real_digits = pytest.mark.skipif(
    not mnist_path().exists(), reason="digits not prepared: run ttt-video prepare mnist"
)


@pytest.fixture(scope="module")
def shapes() -> tuple[np.ndarray, np.ndarray]:
    """Ten synthetic 28x28 'digits' (class c is a filled square of side 2c + 8), 5 per class."""
    images = np.zeros((50, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 5)
    for i, c in enumerate(labels):
        images[i, : 2 * c + 8, : 2 * c + 8] = 100 + 10 * (i % 5)
    return images, labels


def test_bounce_paths_stay_inside_and_move():
    paths = bounce_paths(np.random.default_rng(0), 500, 36, 2)
    assert paths.shape == (2, 500, 2)
    assert paths.min() >= 0 and paths.max() <= 36
    steps = np.abs(np.diff(paths, axis=1)).max(axis=2)
    assert steps.max() <= 6 and (steps > 0).mean() > 0.9


def test_moving_digits_is_deterministic(shapes):
    images, _ = shapes
    a = moving_digits(np.random.default_rng(7), images, 30)
    b = moving_digits(np.random.default_rng(7), images, 30)
    c = moving_digits(np.random.default_rng(8), images, 30)
    assert a.shape == (30, 64, 64) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert (a.reshape(30, -1).max(axis=1) > 0).all()


def test_split_digits_is_disjoint_and_stratified():
    labels = np.repeat(np.arange(10), 500)
    train, test = split_digits(labels)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 5000
    assert np.bincount(labels[test]).tolist() == [100] * 10


def test_train_items_depend_on_index_and_epoch_only(shapes):
    images, _ = shapes
    ds = MovingMNIST("standard", "train", length=8, seed=3, images=images)
    x, y = ds[2]["frames"][:10], ds[2]["frames"][10:]
    assert x.shape == (10, 1, 64, 64) and y.shape == (10, 1, 64, 64) and x.dtype == torch.uint8
    assert torch.equal(ds[2]["frames"][:10], x)
    assert not torch.equal(ds[8 + 2]["frames"][:10], x)
    long = MovingMNIST("long1000", "train", length=2, images=images)
    assert long[0]["frames"][:500].shape[0] == 500 and long[0]["frames"][500:].shape[0] == 500


def test_epoch_sampler_reshuffles_per_epoch():
    sampler = EpochSampler(10, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10, 20))
    assert [i - 10 for i in second] != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_long_range_label_is_the_cue(shapes):
    images, labels = shapes
    cfg = LongRangeConfig(distance=300, cue_frames=3)
    ds = LongRangeDigits(cfg, "val", length=40, images=images, labels=labels)
    seen = set()
    for i in range(40):
        frames, label = ds[i]["frames"], ds[i]["label"]
        assert frames.shape == (303, 1, 64, 64)
        side = int((frames[0, 0] > 0).sum().item() ** 0.5)
        assert side == 2 * label + 8
        assert torch.equal(frames[0], frames[2]) and not torch.equal(frames[2], frames[3])
        seen.add(label)
    assert len(seen) >= 8
    assert torch.equal(ds[5]["frames"], ds[5]["frames"])
    with pytest.raises(ValueError):
        LongRangeConfig(cue_frames=0)


@real_digits
def test_fixed_sets_match_the_generator_and_protocol():
    from ttt_video.data.fetch import load_mnist_digits

    images, labels = load_mnist_digits()
    pool = images[split_digits(labels)[1]]
    for variant in ("standard", "context90", "long200"):
        path = fixed_set_path(variant, "test")
        if not path.exists():
            pytest.fail(f"{path} missing although the digits are prepared: rerun data_prep")
        data = np.load(path, mmap_mode="r")
        v = VARIANTS[variant]
        assert data.shape == (v.num_test, v.num_frames, 64, 64)
        for i in (0, 17):
            rng = np.random.default_rng([SPLIT_SEEDS["test"], i])
            assert np.array_equal(data[i], moving_digits(rng, pool, v.num_frames))
    targets = np.load(fixed_set_path("standard", "test"), mmap_mode="r")[:300, 10:] / 255.0
    zero_mse = (targets**2).sum(axis=(2, 3)).mean()
    assert 140 < zero_mse < 200  # docs/data.md: predicting zeros scores 172.9


@real_digits
def test_datamodules_on_real_digits():
    dm = MovingMNISTDataModule("standard", batch_size=4, train_length=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    x, y = batch["frames"][:, :10], batch["frames"][:, 10:]
    assert x.shape == (4, 10, 1, 64, 64) and y.shape == (4, 10, 1, 64, 64)
    vx = next(iter(dm.val_dataloader()))["frames"][:, :10]
    assert vx.shape == (4, 10, 1, 64, 64)
    assert hasattr(dm.train_dataloader().sampler, "set_epoch")
    lr = LongRangeDataModule(
        LongRangeConfig(distance=50), batch_size=2, train_length=4, eval_length=4
    )
    lr.setup("fit")
    batch = next(iter(lr.val_dataloader()))
    frames, label = batch["frames"], batch["label"]
    assert frames.shape == (2, 54, 1, 64, 64) and label.shape == (2,)
    test_labels = LongRangeDigits(LongRangeConfig(distance=0), "test", length=200)
    assert len({int(test_labels[i]["label"]) for i in range(200)}) == 10


def test_epoch_sampler_shares_an_epoch_between_ranks():
    whole = EpochSampler(11, seed=3)
    ranks = [EpochSampler(11, seed=3, world=2, rank=r) for r in (0, 1)]
    for s in (whole, *ranks):
        s.set_epoch(2)
    order, shares = list(whole), [list(s) for s in ranks]
    assert len(ranks[0]) == len(shares[0]) == len(shares[1]) == 5
    assert shares[0] == order[0:10:2] and shares[1] == order[1:10:2]
    assert not set(shares[0]) & set(shares[1])
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(11, world=2, rank=2)


def test_no_trainer_seed_or_epoch_repeats_a_fixed_sequence():
    """Training draws on the validation pool, so its streams must never be the fixed sets'."""
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (30, 28, 28), dtype=np.uint8)
    v = VARIANTS["standard"]
    fixed = [
        moving_digits(np.random.default_rng([SPLIT_SEEDS[split], i]), images, v.num_frames)
        for split in ("val", "test")
        for i in range(6)
    ]  # as build_fixed_set draws them (here from one pool)
    for seed in range(4):
        train = MovingMNIST("standard", "train", length=2, seed=seed, images=images)
        for index in range(12):  # epochs 0-5
            frames = train[index]["frames"][:, 0].numpy()
            assert not any(np.array_equal(frames, f) for f in fixed), (seed, index)


@pytest.fixture
def tiny_variant(shapes, monkeypatch) -> str:
    """A 2 -> 2 variant of 3 sequences per fixed set, drawn from the synthetic ``shapes``."""
    monkeypatch.setitem(VARIANTS, "tiny", MovingMNISTVariant(2, 2, num_val=3, num_test=3))
    monkeypatch.setattr(moving_mnist, "load_mnist_digits", lambda: shapes)
    return "tiny"


def test_fixed_set_built_twice_at_once_is_whole(shapes, tiny_variant, tmp_path):
    """Two builders of one fixed set at the same time (two benchmarks started together): the
    second starts and finishes while the first is writing; both succeed and the file holds
    the set (with one shared partial file, the first lost its file to the second's rename)."""
    inner = []

    def second_builder_midway(indices):
        for i in indices:
            if i == 1 and not inner:
                inner.append(build_fixed_set(tiny_variant, "test", tmp_path))
            yield i

    path = build_fixed_set(tiny_variant, "test", tmp_path, progress=second_builder_midway)
    assert inner == [path]
    _, test_idx = split_digits(shapes[1])
    expected = [
        moving_digits(np.random.default_rng([SPLIT_SEEDS["test"], i]), shapes[0][test_idx], 4)
        for i in range(3)
    ]
    np.testing.assert_array_equal(np.load(path), np.stack(expected))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left


def test_interrupted_fixed_set_build_leaves_nothing(tiny_variant, tmp_path):
    """Ctrl-C while a fixed set is written: neither the set nor a partial file remains."""

    def interrupted(indices):
        for i in indices:
            if i == 1:
                raise KeyboardInterrupt
            yield i

    with pytest.raises(KeyboardInterrupt):
        build_fixed_set(tiny_variant, "val", tmp_path, progress=interrupted)
    assert list(tmp_path.iterdir()) == []
