"""The video demos and the quickstart, end to end on small generated inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ttt_video.apps.cli import main
from ttt_video.apps.demo import Rollout, classify_demo, rollout_context, stream_one_step
from ttt_video.apps.quickstart import STEPS, quickstart_run
from ttt_video.data.fetch import mnist_path
from ttt_video.data.video.frames import FrameFormat, frames_to_float
from ttt_video.data.video.reader import probe_video, read_video
from ttt_video.data.video.writer import write_video
from ttt_video.models import config_from_name
from ttt_video.models.video import VideoModel
from ttt_video.train.runner import fit
from ttt_video.train.tasks import load_run_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 30-frame 48x64 RGB clip of a square sliding right, written with the package's writer."""
    x = torch.zeros(30, 3, 48, 64)
    for t in range(30):
        x[t, :, 10:20, 2 * t : 2 * t + 10] = 1
    return write_video(tmp_path_factory.mktemp("clip") / "square.mp4", x, fps=10)


def only_run(parent: Path) -> Path:
    (run,) = [p for p in parent.iterdir() if p.is_dir()]
    return run


def test_predict_fits_on_the_video(clip, tmp_path):
    args = ["demo", "predict", str(clip), "--out", str(tmp_path), "--fit-steps", "2"]
    assert main([*args, "--horizon", "5", "--size", "32"]) == 0
    run = only_run(tmp_path)
    for name in ("next_frame.gif", "rollout.mp4", "psnr.png", "metrics.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["frames"] == 30 and len(metrics["psnr_rollout"]) == 5
    assert probe_video(run / "next_frame.mp4").num_frames == 30  # every frame, streamed
    rows = (run / "psnr.csv").read_text().splitlines()
    assert rows[0] == "frame,psnr_model,psnr_copy_last" and len(rows) == 30  # frames 1..29
    fitted = load_run_config(run / "fit" / "config.yaml")  # the fit went through the runner
    assert (fitted.task, fitted.data.source, fitted.data.max_frames) == (
        "video_predict",
        "file",
        22,
    )
    assert fitted.trainer.max_steps == 2 and fitted.model.objective.rollout_training
    assert (run / "fit" / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((run / "fit" / "status.json").read_text())["state"] == "completed"


def test_rollout_context_fits_the_horizon_in_the_file():
    """3/4 of the frames by default, fewer when the horizon would not fit after them."""
    assert rollout_context("clip.mp4", 30, None, 5) == 22
    assert rollout_context("clip.mp4", 30, None, 16) == 14
    assert rollout_context("clip.mp4", 30, 10, 20) == 10
    for context, horizon in ((None, 29), (25, 16)):
        with pytest.raises(ValueError, match=r"clip.mp4: 30 frames; --context \+ --horizon"):
            rollout_context("clip.mp4", 30, context, horizon)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--horizon", "40"], "square.mp4: 30 frames; --context + --horizon must fit in them"),
        (["--context", "28"], "square.mp4: 30 frames; --context + --horizon must fit in them"),
        (["--horizon", "0"], "--horizon: expected >= 1, got 0"),
        (["--context", "0"], "--context: expected >= 2 without --ckpt, got 0"),
    ],
    ids=["horizon-past-the-end", "context-past-the-end", "zero-horizon", "zero-context"],
)
def test_predict_rejects_what_does_not_fit_before_fitting(clip, tmp_path, capsys, flags, message):
    """A rollout longer than the file, or a non-positive one, is a usage error before the fit
    and before the run folder."""
    out = tmp_path / "demo"
    args = ["demo", "predict", str(clip), "--out", str(out), "--fit-steps", "1", *flags]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def predictor() -> VideoModel:
    """A small TTT-Linear predictor whose (residual) decoder is not zero, so that its
    predictions depend on the frames before."""
    torch.manual_seed(0)
    model = VideoModel(config_from_name("video_ttt_linear_debug", image_size=32, channels=3))
    torch.nn.init.normal_(model.decoder.proj.weight, std=0.05)
    return model.eval()


def test_streamed_predictions_equal_one_call_on_the_whole_clip(clip, predictor):
    """Chunks of 7 frames, one cut at frame 10 for the rollout: the one-step predictions, the
    rollout after frame 10 and the frames around it are those of the whole clip at once."""
    fmt = FrameFormat(size=32, channels=3)
    x = frames_to_float(read_video(clip, fmt=fmt).frames)
    with torch.no_grad():
        whole = predictor(x[None]).next_frames[0].clamp(0, 1)
        expected_rollout = predictor.rollout(x[None, :10], 4)[0][0]
    rollout = Rollout(context=10, horizon=4)
    seen = []
    for t, frames, pred, out in stream_one_step(predictor, clip, fmt, chunk=7, split_at=10):
        assert t == sum(len(f) for f in seen) and len(frames) <= 7
        assert torch.equal(frames, x[t : t + len(frames)])
        assert torch.allclose(
            pred[1 if t == 0 else 0 :], whole[max(t - 1, 0) : t + len(frames) - 1], atol=1e-5
        )
        seen.append(frames)
        with torch.no_grad():
            rollout.add(predictor, t, frames, out)
    assert [len(f) for f in seen] == [7, 3, 4, 7, 7, 2]  # cut at frame 10
    assert torch.allclose(rollout.pred, expected_rollout, atol=1e-5)
    assert torch.equal(rollout.before, x[2:10]) and torch.equal(
        torch.cat(rollout.truth)[:4], x[10:14]
    )


def test_stream_reports_flat_memory(clip, tmp_path):
    assert main(["demo", "stream", str(clip), "--out", str(tmp_path), "--size", "32"]) == 0
    metrics = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert metrics["frames"] == 30 and metrics["frames_per_s_median"] > 0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--chunk", "0"], "--chunk: expected >= 1, got 0"),
        (
            ["--preset", "ttt_linear_debug"],
            "--preset: ttt_linear_debug is a language-model preset; demo stream needs a video "
            "preset (video_...)",
        ),
    ],
    ids=["zero-chunk", "language-model-preset"],
)
def test_stream_rejects_a_bad_chunk_or_preset(clip, tmp_path, capsys, flags, message):
    """A chunk below 1 or a language-model preset is a usage error before the run folder."""
    out = tmp_path / "demo"
    assert main(["demo", "stream", str(clip), "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory) -> Path:
    """A one-step ``long_range_ttt_linear_debug`` checkpoint: a classifier of 1x32x32 frames
    without a prediction head."""
    config = ROOT / "configs" / "video" / "long_range_ttt_linear_debug.yaml"
    run = load_run_config(
        config,
        {
            "out_dir": str(tmp_path_factory.mktemp("train")),
            "trainer.max_steps": 1,
            "trainer.progress_bar": False,
            "data.distance": 8,
            "data.eval_length": 8,
        },
    )
    fit(run)
    return run.run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.skipif(not mnist_path().exists(), reason="MNIST digits not prepared")
def test_classify_with_a_checkpoint(clip, classifier_ckpt, tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "classify", str(clip), "--ckpt", str(classifier_ckpt), "--out", str(out)]
    assert main(args) == 0
    run_dir = only_run(out)
    rows = (run_dir / "labels.csv").read_text().splitlines()
    assert len(rows) == 31 and (run_dir / "labels_over_time.png").is_file()
    assert classify_demo(clip, classifier_ckpt, out, size=32, channels=1, device="cpu").is_dir()
    for conflict in ({"size": 64}, {"channels": 3}):
        with pytest.raises(ValueError, match=f"--{next(iter(conflict))}: .* conflicts"):
            classify_demo(clip, classifier_ckpt, out, **conflict)
    with pytest.raises(ValueError, match="--chunk: expected >= 1, got 0"):
        classify_demo(clip, classifier_ckpt, out, chunk=0)


@pytest.mark.skipif(not mnist_path().exists(), reason="MNIST digits not prepared")
def test_predict_rejects_a_checkpoint_without_a_prediction_head(
    clip, classifier_ckpt, tmp_path, capsys
):
    """A classifier's checkpoint is a usage error naming it, before the run folder."""
    out = tmp_path / "demo"
    args = ["demo", "predict", str(clip), "--ckpt", str(classifier_ckpt), "--out", str(out)]
    assert main(args) == 2
    assert f"--ckpt: {classifier_ckpt} has no prediction head" in capsys.readouterr().err
    assert not out.exists()


def test_demo_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "missing.mp4"
    assert main(["demo", "stream", str(missing), "--out", str(tmp_path)]) == 2
    assert "missing.mp4" in capsys.readouterr().err


@pytest.mark.skipif(not mnist_path().exists(), reason="MNIST digits not prepared")
def test_quickstart_tiny(tmp_path, capsys):
    args = ["quickstart", "--out", str(tmp_path), "--max-steps", "2", "--test-size", "8"]
    assert main(args) == 0
    run = only_run(tmp_path)
    for name in ("comparison.mp4", "comparison.gif", "training.png", "per_frame_mse.png"):
        assert (run / name).is_file(), name
    result = json.loads((run / "metrics.json").read_text())
    assert set(result["metrics"]) == {"TTT-Linear (ours)", "zeros", "mean frame", "copy last frame"}
    assert {"ssim_openstl", "psnr_openstl"} <= set(result["metrics"]["zeros"])
    out = capsys.readouterr().out
    assert "copy last frame" in out
    summary = (run / "summary.txt").read_text()
    assert "MSE per frame than the best baseline" in summary
    assert "Moving-MNIST-style 10 -> 10" in summary  # the run file's protocol
    assert (result["context_frames"], result["predicted_frames"]) == (10, 10)
    assert not any(word in summary for word in ("PASS", "FAIL", "bar:"))
    report = (run / "report.md").read_text()
    assert "| TTT-Linear (ours) |" in report and "![comparison](comparison.gif)" in report


def test_quickstart_validates_along_the_run():
    """Enough validation points for ``training.png`` to show a curve."""
    trainer = quickstart_run("q", "runs", STEPS, 0)["trainer"]
    assert STEPS // trainer["val_check_interval"] >= 5
