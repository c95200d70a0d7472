"""The quickstart's test-set evaluation reads and scores the set batch by batch, with the
numbers of the whole set scored at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ttt_video.apps.quickstart import OURS, SHOWN, evaluate_all, mean_training_frame
from ttt_video.data.fetch import mnist_path
from ttt_video.data.synthetic.moving_mnist import moving_digits
from ttt_video.data.video.frames import frames_to_float
from ttt_video.models import config_from_name
from ttt_video.train.config import OptimConfig
from ttt_video.train.video_metrics import frame_metrics, mse_per_frame
from ttt_video.train.video_module import VideoPredictModule

pytestmark = pytest.mark.skipif(not mnist_path().exists(), reason="MNIST digits not prepared")
N, BATCH = 11, 4


class BatchReads:
    """A test set ``[N, F, S, S]`` that can be read only in slices of at most ``batch``
    sequences (as from a memory map, batch by batch); it refuses to be read whole."""

    def __init__(self, data: np.ndarray, batch: int) -> None:
        self.data, self.batch = data, batch

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        rows = range(len(self.data))[index]
        if isinstance(rows, range) and len(rows) > self.batch:
            raise AssertionError(f"read {len(rows)} sequences at once (batch {self.batch})")
        return self.data[index]

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole test set was read at once")


@pytest.fixture(scope="module")
def setup() -> tuple[VideoPredictModule, np.ndarray]:
    """A small untrained predictor and ``N`` Moving-MNIST-style test sequences uint8
    ``[N, 20, 64, 64]`` (synthetic digits)."""
    torch.manual_seed(0)
    cfg = config_from_name("video_ttt_linear_debug")
    module = VideoPredictModule(cfg, OptimConfig(), 10, num_input=10, num_output=10).eval()
    rng = np.random.default_rng(0)
    images = (rng.random((6, 28, 28)) * 255).astype(np.uint8)
    test = np.stack([moving_digits(rng, images, 20) for _ in range(N)])
    return module, test


def test_evaluation_reads_the_set_batch_by_batch(setup):
    module, test = setup
    metrics, curves, shown = evaluate_all(module, BatchReads(test, BATCH), batch=BATCH)
    assert set(metrics) == {OURS, "zeros", "mean frame", "copy last frame"}
    assert shown.shape == (SHOWN, 10, 1, 64, 64)


def test_evaluation_has_the_numbers_of_the_whole_set(setup):
    """Every metric, curve and shown rollout as when the whole set is rolled out in the same
    batches, then scored at once."""
    module, test = setup
    metrics, curves, shown = evaluate_all(module, test, batch=BATCH)
    x = frames_to_float(torch.from_numpy(test).unsqueeze(2))
    target = x[:, 10:]
    with torch.no_grad():
        preds = torch.cat(
            [
                module.evaluate(torch.from_numpy(test[i : i + BATCH]).unsqueeze(2))[0]
                for i in range(0, N, BATCH)
            ]
        )
    methods = {
        OURS: preds,
        "zeros": torch.zeros_like(target),
        "mean frame": mean_training_frame().expand_as(target),
        "copy last frame": x[:, 9:10].expand_as(target),
    }
    for name, pred in methods.items():
        assert metrics[name] == frame_metrics(pred, target, openstl=True), name
        assert curves[name] == mse_per_frame(pred, target).mean(0).tolist(), name
    assert torch.equal(shown, preds[:SHOWN])
