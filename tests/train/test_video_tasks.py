"""Video tasks: one training step of every ``_debug`` video config, config errors, metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ttt_video.data.fetch import mnist_path
from ttt_video.data.synthetic.moving_mnist import fixed_set_path
from ttt_video.data.video.writer import write_video
from ttt_video.train.config import ConfigError
from ttt_video.train.runner import fit
from ttt_video.train.tasks import load_run_config
from ttt_video.train.video_metrics import frame_metrics, mse_per_frame, psnr, ssim, topk_accuracy

ROOT = Path(__file__).resolve().parents[2]
DEBUG = sorted((ROOT / "configs" / "video").glob("*_debug.yaml"))


def make_class_folders(root: Path, frames: int = 36) -> Path:
    """Two classes of two short RGB clips each (a square moving left or right)."""
    for label, direction in (("left", -1), ("right", 1)):
        for k in range(2):
            x = torch.zeros(frames, 3, 40, 48)
            for t in range(frames):
                left = (20 + direction * t + 5 * k) % 38
                x[t, :, 12:22, left : left + 10] = 1
            write_video(root / label / f"clip{k}.mp4", x, fps=10)
    return root


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return make_class_folders(tmp_path_factory.mktemp("videos"))


def overrides(path: Path, out: Path, videos: Path) -> dict:
    o = {
        "out_dir": str(out),
        "trainer.max_steps": 1,
        "trainer.val_check_interval": 1,
        "trainer.limit_val_batches": 1,
        "trainer.progress_bar": False,
    }
    if path.stem.startswith("folder_predict"):
        o.update({"data.path": str(videos), "data.val_path": str(videos)})
    if path.stem.startswith("manifest_classify"):
        o.update({"data.train": str(videos), "data.val": str(videos), "data.num_frames": 8})
    if path.stem.startswith("long_range"):
        o.update({"data.distance": 20, "data.eval_length": 16})
    return o


def needs(path: Path) -> str | None:
    if path.stem.startswith(("mmnist", "long_range")) and not mnist_path().exists():
        return "MNIST digits not prepared (python data_prep/moving_mnist.py)"
    if path.stem.startswith("mmnist_long200") and not fixed_set_path("long200", "val").exists():
        return "long200 set not built (python data_prep/moving_mnist.py)"
    if path.stem.startswith("mmnist") and not fixed_set_path("standard", "val").exists():
        return "standard set not built (python data_prep/moving_mnist.py)"
    return None


def test_every_video_config_has_a_debug_sibling():
    names = {p.stem for p in (ROOT / "configs" / "video").glob("*.yaml")}
    assert DEBUG and all(f"{n}_debug" in names for n in names if not n.endswith("_debug"))


@pytest.mark.parametrize("path", DEBUG, ids=lambda p: p.stem)
def test_one_training_step(path, tmp_path, videos):
    if reason := needs(path):
        pytest.skip(reason)
    run = load_run_config(path, overrides(path, tmp_path, videos))
    status = fit(run)
    assert status["state"] == "completed" and status["step"] == 1
    assert (run.run_dir / "checkpoints" / "last.ckpt").is_file()
    key = "val/mse" if run.task == "video_predict" else "val/top1"
    assert key in status


@pytest.mark.parametrize(
    "override, field",
    [
        ({"model.image_size": 48}, "model.image_size"),
        ({"data.variant": "huge"}, "data.variant"),
        ({"data.num_output": 5}, "data.num_input"),
        ({"data.context_weight": 0}, "data.context_weight"),
        ({"model.preset": "ttt_linear_debug"}, "model.preset"),
        ({"model.decoder": "pixelshuffle"}, "model.decoder"),
        ({"data.time_budget_s": 60, "trainer.devices": 2}, "data.time_budget_s"),
    ],
)
def test_bad_predict_configs_name_the_field(override, field, tmp_path):
    path = ROOT / "configs" / "video" / "mmnist_ttt_linear_debug.yaml"
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run = load_run_config(path, {"out_dir": str(tmp_path), **override})
        fit(run)


def test_missing_video_folder_is_named(tmp_path):
    path = ROOT / "configs" / "video" / "folder_predict_ttt_linear_debug.yaml"
    run = load_run_config(path, {"out_dir": str(tmp_path), "data.path": str(tmp_path / "nope")})
    with pytest.raises(FileNotFoundError, match="data.path"):
        fit(run)
    assert not run.run_dir.exists()


def test_metrics():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 1, 16, 16, generator=g)
    assert mse_per_frame(target, target).abs().max() == 0
    assert torch.allclose(ssim(target, target), torch.ones(2, 3), atol=1e-5)
    zeros = torch.zeros_like(target)
    assert torch.allclose(mse_per_frame(zeros, target), target.square().sum((2, 3, 4)))
    expected = -10 * torch.log10(target.square().mean((2, 3, 4)))
    assert torch.allclose(psnr(zeros, target), expected, atol=1e-4)
    noisy = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    m = frame_metrics(noisy, target)
    assert 0 < m["ssim"] < 1 and m["psnr"] > 15
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    assert topk_accuracy(logits, torch.tensor([2, 0]), 1) == 0.5
    assert topk_accuracy(logits, torch.tensor([2, 0]), 2) == 1.0
    with pytest.raises(ValueError, match="pred/target"):
        mse_per_frame(zeros, target[:, :2])
