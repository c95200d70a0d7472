"""Video tasks: one training step of every ``_debug`` video config, config errors, metrics,
the batch every video dataset yields, the objective section, trainer options; one class index
per run, unreadable files, exact resume."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from ttt_video.data.fetch import mnist_path
from ttt_video.data.synthetic.long_range import LongRangeConfig, LongRangeDigits
from ttt_video.data.synthetic.moving_mnist import MovingMNIST, fixed_set_path
from ttt_video.data.video.clips import ClipSpec
from ttt_video.data.video.errors import UnreadableDataError
from ttt_video.data.video.folder import VideoClipDataset
from ttt_video.data.video.frames import FrameFormat, frames_to_float
from ttt_video.data.video.manifest import load_items
from ttt_video.data.video.windows import VideoWindows
from ttt_video.data.video.writer import write_video
from ttt_video.models import config_from_name
from ttt_video.train.config import ConfigError, OptimConfig
from ttt_video.train.run_report import read_metrics_csv
from ttt_video.train.runner import fit, load_class_names
from ttt_video.train.tasks import get_task, load_run_config
from ttt_video.train.video_metrics import frame_metrics, mse_per_frame, psnr, ssim, topk_accuracy
from ttt_video.train.video_module import VideoClassifyModule, VideoPredictModule
from ttt_video.train.video_tasks import classify_datamodule

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
    moving_mnist = path.stem.startswith(("mmnist", "quickstart"))
    if (moving_mnist or path.stem.startswith("long_range")) and not mnist_path().exists():
        return "MNIST digits not prepared (ttt-video prepare mnist)"
    if path.stem.startswith("mmnist_long200") and not fixed_set_path("long200", "val").exists():
        return "long200 set not built (ttt-video prepare mnist)"
    if moving_mnist and not fixed_set_path("standard", "val").exists():
        return "standard set not built (ttt-video prepare mnist)"
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
        ({"model.objective.context_weight": 0}, "model.objective.context_weight"),
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


@pytest.mark.parametrize(
    "config, override, message",
    [
        ("folder_predict", {"data.channels": 2}, "data.channels: expected 1 (grayscale) or 3"),
        ("manifest_classify", {"data.channels": 4}, "data.channels: expected 1 (grayscale) or 3"),
        ("long_range", {"data.channels": 3}, "data.channels: long_range is grayscale"),
    ],
)
def test_channels_other_than_grey_or_rgb_name_the_data_field(config, override, message):
    path = ROOT / "configs" / "video" / f"{config}_ttt_linear_debug.yaml"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_run_config(path, override)


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


def test_every_video_dataset_yields_the_same_item(videos):
    """``{"frames": uint8 [F, C, H, W]}`` (+ ``"label": int`` for classification), which the
    default collation turns into ``{"frames": uint8 [B, F, C, H, W], "label": int64 [B]}``."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = np.arange(20) % 10
    items, _ = load_items(videos)
    spec, fmt = ClipSpec(num_frames=8), FrameFormat(size=32, channels=1)
    predict = {
        "moving_mnist": MovingMNIST("standard", "train", length=2, images=images),
        "folder": VideoClipDataset(items, spec, fmt, labelled=False),
        "file": VideoWindows(next(videos.glob("*/*.mp4")), 8, length=2, fmt=fmt),
    }
    classify = {
        "long_range": LongRangeDigits(
            LongRangeConfig(distance=4, size=32), "val", 2, images=images, labels=labels
        ),
        "manifest": VideoClipDataset(items, spec, fmt),
    }
    for name, dataset in {**predict, **classify}.items():
        item = dataset[0]
        assert set(item) == ({"frames", "label"} if name in classify else {"frames"}), name
        assert item["frames"].dtype == torch.uint8 and item["frames"].ndim == 4, name
        batch = default_collate([item, dataset[1]])
        assert batch["frames"].dtype == torch.uint8 and batch["frames"].ndim == 5, name
        if name in classify:
            assert type(item["label"]) is int, name
            assert batch["label"].dtype == torch.int64 and batch["label"].shape == (2,), name


def test_frames_become_float_in_one_place():
    full = torch.full((1, 4, 1, 64, 64), 255, dtype=torch.uint8)
    assert frames_to_float(full).dtype == torch.float32 and torch.all(frames_to_float(full) == 1)
    x = torch.rand(1, 4, 1, 64, 64)
    assert frames_to_float(x) is x
    with pytest.raises(TypeError, match="frames"):
        frames_to_float(full.long())
    cfg = config_from_name("video_ttt_linear_debug")
    module = VideoPredictModule(cfg, OptimConfig(), 10, num_input=2, num_output=2)
    preds, target = module.evaluate(full)
    assert target.dtype == torch.float32 and torch.all(target == 1.0)
    assert preds.shape == target.shape == (1, 2, 1, 64, 64)
    assert torch.equal(module.loss(full), module.loss(frames_to_float(full)))


@pytest.mark.parametrize(
    "config, key, value",
    [
        ("mmnist_ttt_linear_debug", "loss", "l1"),
        ("mmnist_ttt_linear_debug", "rollout_training", True),
        ("mmnist_ttt_linear_debug", "feedback_grad", True),
        ("mmnist_ttt_linear_debug", "context_weight", 2.0),
        ("long_range_ttt_linear_debug", "readout", "mean"),
        ("long_range_ttt_linear_debug", "window_frames", 8),
    ],
)
def test_objective_options_live_in_the_model_section(config, key, value):
    path = ROOT / "configs" / "video" / f"{config}.yaml"
    run = load_run_config(path, {f"model.objective.{key}": value})
    assert getattr(run.model.objective, key) == value
    with pytest.raises(ConfigError, match=rf"data\.{key}: .*model\.objective\.{key}"):
        load_run_config(path, {f"data.{key}": value})


def test_objective_values_are_checked_once_with_the_field_named():
    path = ROOT / "configs" / "video" / "long_range_ttt_linear_debug.yaml"
    with pytest.raises(ConfigError, match=r"model\.objective\.readout: expected one of"):
        load_run_config(path, {"model.objective.readout": "first"})
    with pytest.raises(ConfigError, match=r"model\.objective\.window_frames"):
        load_run_config(path, {"model.objective.window_frames": 0})
    path = ROOT / "configs" / "video" / "mmnist_ttt_linear_debug.yaml"
    with pytest.raises(ConfigError, match=r"model\.objective\.loss: expected one of"):
        load_run_config(path, {"model.objective.loss": "huber"})


def test_trainer_gradient_checkpointing_reaches_the_video_model():
    path = ROOT / "configs" / "video" / "long_range_ttt_linear_debug.yaml"
    run = load_run_config(path, {"trainer.gradient_checkpointing": True})
    task = get_task(run.task)
    for model in (task.build_model(run), task.build(run)[0].model):
        assert model.cfg.gradient_checkpointing
        assert all(block.cfg.gradient_checkpointing for block in model.backbone.blocks)
    plain = load_run_config(path)
    assert not task.build(plain)[0].model.cfg.gradient_checkpointing


def test_file_source_trains_on_windows_of_one_video(videos, tmp_path):
    path = ROOT / "configs" / "video" / "folder_predict_ttt_linear_debug.yaml"
    clip = next(videos.glob("*/*.mp4"))
    overrides = {
        "out_dir": str(tmp_path),
        "data.source": "file",
        "data.path": str(clip),
        "data.max_frames": 20,
        "trainer.max_steps": 2,
        "trainer.val_check_interval": 2,
        "trainer.progress_bar": False,
    }
    run = load_run_config(path, overrides)
    status = fit(run)
    assert status["state"] == "completed" and status["step"] == 2
    assert (run.run_dir / "checkpoints" / "last.ckpt").is_file()


FOLDER_PREDICT = ROOT / "configs" / "video" / "folder_predict_ttt_linear_debug.yaml"
MANIFEST_CLASSIFY = ROOT / "configs" / "video" / "manifest_classify_ttt_linear_debug.yaml"


def copy_clips(folder: Path, files: dict[str, Path]) -> Path:
    """``folder/<relative path>`` copies of ``files``."""
    for relative, source in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / relative)
    return folder


def short_predict_run(tmp_path: Path, path: Path, **overrides):
    """A folder-prediction run of 8-frame clips (4 in, 4 out) logging every step."""
    common = {
        "out_dir": str(tmp_path),
        "data.path": str(path),
        "data.val_path": None,
        "data.num_input": 4,
        "data.num_output": 4,
        "trainer.log_every": 1,
        "trainer.progress_bar": False,
    }
    return load_run_config(FOLDER_PREDICT, {**common, **overrides})


def test_resumed_folder_run_gives_the_same_losses(videos, tmp_path, losses):
    """4 videos in batches of 2: 2 steps per epoch, so the stop at step 3 is mid-epoch."""
    steps = {"data.batch_size": 2, "trainer.val_check_interval": 3, "trainer.max_steps": 6}
    fit(short_predict_run(tmp_path, videos, name="whole", **steps))
    split = {**steps, "name": "split", "optim.schedule_steps": 6}
    fit(short_predict_run(tmp_path, videos, **{**split, "trainer.max_steps": 3}))
    fit(short_predict_run(tmp_path, videos, **split), resume="auto")
    whole, resumed = losses(tmp_path / "whole"), losses(tmp_path / "split")
    assert sorted(whole) == sorted(resumed) == list(range(6))
    for step in whole:
        assert resumed[step] == pytest.approx(whole[step], rel=1e-6, abs=1e-6), step


def test_unreadable_videos_are_skipped_counted_and_bounded(videos, tmp_path, caplog):
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 20)
    good = {f"good{k}.mp4": p for k, p in enumerate(sorted(videos.glob("left/*.mp4")))}
    folder = copy_clips(tmp_path / "mixed", {**good, "bad0.mp4": text, "bad1.mp4": text})
    options = {"data.batch_size": 1, "data.num_workers": 2, "trainer.val_check_interval": 8}
    caplog.set_level(logging.WARNING, logger="ttt_video.train.video_module")
    status = fit(
        short_predict_run(tmp_path, folder, name="half", **options, **{"trainer.max_steps": 8})
    )
    assert status["state"] == "completed" and status["step"] == 8  # batches of one bad file too
    rows = read_metrics_csv(tmp_path / "half" / "logs" / "version_0" / "metrics.csv")
    assert [value for _, value in rows["train/skipped_files"]] == [2, 2]  # both epochs, all workers
    assert caplog.text.count("2 of 4 training items had an unreadable video") == 2
    copy_clips(folder, {"bad2.mp4": text})
    run = short_predict_run(tmp_path, folder, name="most", **options, **{"trainer.max_steps": 8})
    with pytest.raises(UnreadableDataError, match=r"3 of the 5 training items of epoch 0"):
        fit(run)
    assert json.loads((run.run_dir / "status.json").read_text())["state"] == "failed"


def test_empty_or_flat_folders(videos, tmp_path):
    (tmp_path / "empty").mkdir()
    run = short_predict_run(tmp_path, tmp_path / "empty", name="on_empty")
    with pytest.raises(ConfigError, match=r"data\.path: .*empty: no videos found"):
        fit(run)
    assert not run.run_dir.exists()
    flat = copy_clips(
        tmp_path / "flat", {f"{p.parent.name}_{p.name}": p for p in videos.glob("*/*")}
    )
    run = short_predict_run(tmp_path, flat, name="flat", **{"trainer.max_steps": 1})
    assert fit(run)["state"] == "completed"


def test_one_class_index_from_training_travels_with_the_run(videos, tmp_path):
    clip = next(videos.glob("left/*.mp4"))
    train = copy_clips(tmp_path / "train", {f"{c}/{c}.mp4": clip for c in ("left", "right", "up")})
    val = copy_clips(tmp_path / "val", {"right/r.mp4": clip, "up/u.mp4": clip})  # no "left"
    overrides = {
        "out_dir": str(tmp_path / "runs"),
        "data.train": str(train),
        "data.val": str(val),
        "data.num_frames": 8,
        "trainer.max_steps": 1,
        "trainer.val_check_interval": 1,
        "trainer.progress_bar": False,
    }
    run = load_run_config(MANIFEST_CLASSIFY, overrides)
    dm = classify_datamodule(run.data, 0)
    assert [i.label for i in dm.items["val"]] == [1, 2]  # right, up: their training indices
    with pytest.warns(UserWarning, match=r"num_classes: \d+ outputs for the data's 3 classes"):
        assert fit(run)["state"] == "completed"
    names = ["left", "right", "up"]
    assert json.loads((run.run_dir / "classes.json").read_text()) == names
    assert load_class_names(run.run_dir / "checkpoints" / "last.ckpt") == names
    from ttt_video.apps.demo import class_names

    shown = class_names(run, run.run_dir / "checkpoints" / "last.ckpt")
    assert shown[:3] == names and len(shown) == run.model.num_classes
    from ttt_video.apps.export import export_run

    exported = export_run(run.run_dir / "checkpoints" / "last.ckpt", tmp_path / "shared")
    assert json.loads((exported / "classes.json").read_text()) == names
    module = VideoClassifyModule(run.model.network(), run.optim, 1, class_names=["left", "up"])
    with pytest.raises(ValueError, match="class_names: the checkpoint was trained on classes"):
        module.on_load_checkpoint({"class_names": names})
    copy_clips(val, {"down/d.mp4": clip})
    unknown = load_run_config(MANIFEST_CLASSIFY, {**overrides, "name": "unknown"})
    with pytest.raises(ConfigError, match=r"data\.val: .*classes \['down'\] are not among"):
        fit(unknown)
    assert not unknown.run_dir.exists()
