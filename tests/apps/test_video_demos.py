"""The video demos and the quickstart, end to end on small generated inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ttt_video.apps.cli import main
from ttt_video.apps.demo import Rollout, classify_demo, stream_one_step
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


@pytest.mark.skipif(not mnist_path().exists(), reason="MNIST digits not prepared")
def test_classify_with_a_checkpoint(clip, tmp_path):
    config = ROOT / "configs" / "video" / "long_range_ttt_linear_debug.yaml"
    run = load_run_config(
        config,
        {
            "out_dir": str(tmp_path / "train"),
            "trainer.max_steps": 1,
            "trainer.progress_bar": False,
            "data.distance": 8,
            "data.eval_length": 8,
        },
    )
    fit(run)
    ckpt = run.run_dir / "checkpoints" / "last.ckpt"
    out = tmp_path / "demo"
    assert main(["demo", "classify", str(clip), "--ckpt", str(ckpt), "--out", str(out)]) == 0
    run_dir = only_run(out)
    rows = (run_dir / "labels.csv").read_text().splitlines()
    assert len(rows) == 31 and (run_dir / "labels_over_time.png").is_file()
    assert classify_demo(clip, ckpt, out, size=32, channels=1, device="cpu").is_dir()
    for conflict in ({"size": 64}, {"channels": 3}):
        with pytest.raises(ValueError, match=f"--{next(iter(conflict))}: .* conflicts"):
            classify_demo(clip, ckpt, out, **conflict)


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
    assert not any(word in summary for word in ("PASS", "FAIL", "bar:"))
    report = (run / "report.md").read_text()
    assert "| TTT-Linear (ours) |" in report and "![comparison](comparison.gif)" in report


def test_quickstart_validates_along_the_run():
    """Enough validation points for ``training.png`` to show a curve."""
    trainer = quickstart_run("q", "runs", STEPS, 0)["trainer"]
    assert STEPS // trainer["val_check_interval"] >= 5
