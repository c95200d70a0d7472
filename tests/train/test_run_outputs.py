"""What a run leaves for a person: the loggers of ``trainer.logger``, TensorBoard's rollout
videos and hyperparameters, and the run folder's ``report.md``."""

from __future__ import annotations

import importlib.util
import logging
import re
import warnings

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from ttt_video.data.fetch import mnist_path
from ttt_video.data.synthetic.moving_mnist import fixed_set_path
from ttt_video.train.config import ConfigError, TrainerConfig, from_dict
from ttt_video.train.runner import fit, quiet_known_notices
from ttt_video.train.tasks import load_run_config


def test_logger_takes_one_name_or_a_list():
    assert TrainerConfig().logger == ["tensorboard"]
    assert TrainerConfig(logger="csv").logger == ["csv"]
    assert TrainerConfig(logger=["tensorboard", "wandb"]).logger == ["tensorboard", "wandb"]
    with pytest.raises(ConfigError, match=r"run.trainer.logger: unknown \['comet'\]"):
        from_dict(TrainerConfig, {"logger": ["tensorboard", "comet"]}, "run.trainer")


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_missing_logger_package_is_named_before_the_run(name, write_config, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == name else real(n, *a)
    )
    run = load_run_config(write_config(trainer={"logger": ["tensorboard", name]}))
    with pytest.raises(ConfigError, match=rf"trainer.logger: '{name}' .*pip install {name}"):
        fit(run)
    assert not run.run_dir.exists()


def test_csv_only_run_has_no_tensorboard_and_a_report(write_config):
    run = load_run_config(write_config(trainer={"logger": "csv"}))
    assert fit(run)["state"] == "completed"
    assert not (run.run_dir / "tb").exists()
    assert (run.run_dir / "logs" / "version_0" / "metrics.csv").is_file()
    hparams = yaml.safe_load((run.run_dir / "logs" / "version_0" / "hparams.yaml").read_text())
    assert hparams["optim"]["lr"] == run.optim.lr  # the resolved run
    report = (run.run_dir / "report.md").read_text()
    assert "| `val/loss` |" in report and "tensorboard --logdir" not in report


def relative_links(markdown: str) -> list[str]:
    return re.findall(r"\]\(([^)]+)\)", markdown)


def test_video_run_logs_rollout_videos_hparams_and_writes_a_report(tmp_path):
    if not mnist_path().exists() or not fixed_set_path("standard", "val").exists():
        pytest.skip("MNIST digits or the standard val set not prepared (ttt-video prepare mnist)")
    overrides = {"out_dir": str(tmp_path), "trainer.progress_bar": False}
    run = load_run_config("mmnist_ttt_linear_debug", overrides)  # 4 steps, validated at 2 and 4
    status = fit(run)
    run_dir = run.run_dir

    events = EventAccumulator(str(run_dir / "tb" / "version_0"), size_guidance={"images": 0})
    events.Reload()
    videos = events.Images("val/rollout")
    assert [v.step for v in videos] == [2, 4]
    assert all(v.encoded_image_string.startswith(b"GIF89a") for v in videos)
    hparams = {}
    for content in events.PluginTagToContent("hparams").values():
        data = HParamsPluginData.FromString(content)
        hparams.update(data.session_start_info.hparams)
    assert hparams["optim/lr"].number_value == pytest.approx(run.optim.lr)
    assert hparams["model/width"].number_value == run.model.width

    report = (run_dir / "report.md").read_text()
    assert f"at step {status['step']}" in report
    assert "| `val/mse` |" in report and "```yaml" in report
    links = relative_links(report)
    assert {"training.png", "val_rollout.gif"} <= set(links)
    assert all((run_dir / link).is_file() for link in links)


def test_notices_of_the_dependencies_that_say_nothing_about_the_run_are_hidden():
    """Lightning's cloud-logger tip, torch's CPU-only CUDA note and the LeafSpec deprecation
    are dropped; the other messages of the same loggers and other warnings still show."""
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    lightning_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    torch_log = logging.getLogger("torch.utils.cpp_extension")
    for log in (lightning_log, torch_log):
        log.addHandler(handler)
    try:
        quiet_known_notices()
        quiet_known_notices()  # idempotent: one filter per notice
        lightning_log.warning("💡 Tip: For seamless cloud logging and experiment tracking")
        lightning_log.warning("GPU available: False, used: False")
        torch_log.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        torch_log.warning("Error checking compiler version")
    finally:
        for log in (lightning_log, torch_log):
            log.removeHandler(handler)
    assert seen == ["GPU available: False, used: False", "Error checking compiler version"]
    assert len(lightning_log.filters) == len(set(map(id, lightning_log.filters)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_notices()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]
