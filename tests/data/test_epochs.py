"""The epoch sampler resumes mid-epoch where an uninterrupted run would be."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ttt_video.data.epochs import EpochSampler, batches_done


def batches(sampler: EpochSampler, batch_size: int, epochs: range) -> list[list[int]]:
    """The loader's batches (``drop_last=False``) over ``epochs``, as Lightning drives it."""
    out = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        order = list(sampler)
        out += [order[k : k + batch_size] for k in range(0, len(order), batch_size)]
    return out


@pytest.mark.parametrize("done", [0, 2, 3, 4, 7])
@pytest.mark.parametrize("world, rank", [(1, 0), (2, 1)])
def test_a_resumed_sampler_continues_the_uninterrupted_order(done, world, rank):
    whole = batches(EpochSampler(14, seed=5, world=world, rank=rank), 3, range(4))
    resumed = EpochSampler(14, seed=5, world=world, rank=rank)
    resumed.start_after(done, 3)
    per_epoch = {1: 5, 2: 3}[world]  # 14 or 7 items of a rank's epoch in batches of 3
    epoch = resumed.epoch
    assert epoch == done // per_epoch
    assert batches(resumed, 3, range(epoch, 4)) == whole[done:]


def test_batches_done_counts_the_epoch_end_step_of_accumulation():
    """5 batches per epoch, 2 per step: steps after batches 2, 4 and 5 (Lightning steps on an
    epoch's last batch), so 4 steps are 5 batches of epoch 0 and 2 of epoch 1."""
    trainer = SimpleNamespace(global_step=4, accumulate_grad_batches=2)
    assert batches_done(trainer, 5) == 7
    assert batches_done(SimpleNamespace(global_step=3, accumulate_grad_batches=2), 5) == 5
    assert batches_done(SimpleNamespace(global_step=4, accumulate_grad_batches=1), 5) == 4
    assert batches_done(None, 5) == 0
