"""The command line's discoverable configuration: --help per section, --print_config, list,
configs by name, one flag style, and errors that blame the right flag."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import tomllib
import yaml

import ttt_video
from ttt_video.apps.cli import build_parser, main
from ttt_video.apps.flags import normalize_flags
from ttt_video.models.registry import list_models
from ttt_video.train.config import (
    CONFIGS_DIR,
    ConfigError,
    TrainerConfig,
    config_path,
    field_docs,
    list_configs,
    resolved_dict,
)
from ttt_video.train.tasks import list_tasks, load_run_config

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_field_with_default_and_docstring(capsys):
    assert main(["fit", "--config", "ttt_linear_debug", "--help", "trainer"]) == 0
    out = capsys.readouterr().out
    run = load_run_config("ttt_linear_debug")
    docs = field_docs(TrainerConfig)
    for name, doc in docs.items():
        assert f"--trainer.{name} " in out, name
        assert doc.split()[0] in out
    assert f"--trainer.max_steps {run.trainer.max_steps}\n" in out
    assert "--optim.lr" not in out  # one section only


def test_help_without_config_shows_the_task_defaults(capsys):
    assert main(["fit", "--help", "model", "--task", "video_predict"]) == 0
    out = capsys.readouterr().out
    assert "--model.frames_per_mini_batch" in out and "default of task 'video_predict'" in out
    assert main(["fit", "--help"]) == 0  # every section of the default task
    out = capsys.readouterr().out
    for section in ("model", "data", "optim", "trainer"):
        assert f"--{section}." in out


def test_print_config_is_the_resolved_yaml_and_runs_nothing(capsys, tmp_path):
    argv = ["fit", "--config", "ttt_linear_debug", "--print_config", "--trainer.max_steps", "7"]
    assert main([*argv, "--out_dir", str(tmp_path)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = resolved_dict(
        load_run_config("ttt_linear_debug", {"trainer.max_steps": 7, "out_dir": str(tmp_path)})
    )
    assert printed == expected
    assert list(tmp_path.iterdir()) == []


def test_list_commands(capsys):
    assert main(["list", "models"]) == 0
    assert capsys.readouterr().out.split() == list_models()
    assert main(["list", "tasks"]) == 0
    assert capsys.readouterr().out.split() == list_tasks()
    assert main(["list", "configs"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("ttt_linear_debug", "mmnist_ttt_linear"))


def test_configs_ship_inside_the_package_and_resolve_by_name():
    assert CONFIGS_DIR.parent == Path(ttt_video.__file__).resolve().parent
    shipped = list_configs()
    assert len(shipped) == len(list(CONFIGS_DIR.glob("*/*.yaml"))) > 50
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["ttt_video"]
    assert all(
        any(p.relative_to(CONFIGS_DIR.parent).match(pat) for pat in patterns)
        for p in shipped.values()
    )
    by_path = ROOT / "configs" / "lm" / "ttt_linear_debug.yaml"
    for spec in ("ttt_linear_debug", "lm/ttt_linear_debug", "configs/lm/ttt_linear_debug.yaml"):
        assert config_path(spec).resolve() == by_path.resolve()
    with pytest.raises(ConfigError, match="did you mean ttt_linear_debug"):
        config_path("ttt_linear_debgu")


def test_one_flag_style_hyphens_accepted():
    assert normalize_flags(
        ["--max-new-tokens", "5", "--trainer.max-steps=3", "--prompt", "-x"]
    ) == [
        "--max_new_tokens",
        "5",
        "--trainer.max_steps=3",
        "--prompt",
        "-x",
    ]
    parser = build_parser()
    one = parser.parse_args(normalize_flags(["generate", "--ckpt", "a", "--max-new-tokens", "5"]))
    two = parser.parse_args(normalize_flags(["generate", "--ckpt", "a", "--max_new_tokens", "5"]))
    assert one.max_new_tokens == two.max_new_tokens == 5


def test_device_flag_on_every_inference_command():
    parser = build_parser()
    for argv in (
        ["generate", "--ckpt", "a"],
        ["validate", "--ckpt", "a"],
        ["eval-lm", "--ckpt", "a"],
        ["demo", "predict", "f.mp4"],
        ["demo", "classify", "f.mp4", "--ckpt", "a"],
        ["demo", "stream", "f.mp4"],
    ):
        args, _ = parser.parse_known_args([*argv, "--device", "cuda:1"])
        assert args.device == "cuda:1", argv
        args, _ = parser.parse_known_args(argv)
        assert args.device == "auto" and args.threads is None, argv


def test_quickstart_trains_on_two_threads_where_the_machine_has_them():
    """The compiled quickstart step is 1.36x faster on 2 threads than on 1
    (benchmarks/quickstart_threads.md); a 1-core machine keeps 1."""
    args, _ = build_parser().parse_known_args(["quickstart"])
    assert args.threads == (2 if (os.cpu_count() or 1) >= 2 else 1)
    args, _ = build_parser().parse_known_args(["quickstart", "--threads", "1"])
    assert args.threads == 1


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_a_bad_thread_count_is_a_usage_error(bad, capsys):
    for argv in (["quickstart"], ["generate", "--ckpt", "a"]):
        with pytest.raises(SystemExit) as err:
            main([*argv, "--threads", bad])
        assert err.value.code == 2
        assert "--threads: expected a positive integer" in capsys.readouterr().err


def test_unknown_field_blames_its_own_flag_only(tmp_path):
    overrides = {"trainer.max_steps": 5, "trainer.default_root_dir": str(tmp_path)}
    with pytest.raises(ConfigError) as err:
        load_run_config("ttt_linear_debug", overrides)
    message = str(err.value)
    assert "--trainer.default_root_dir" in message and "--trainer.max_steps" not in message
    assert "out_dir" in message  # Lightning's name points at ours
    with pytest.raises(ConfigError) as err:
        load_run_config("ttt_linear_debug", {"trainer.max_steps": 5, "trainer.max_step": 4})
    assert "did you mean max_steps" in str(err.value)
    assert "set by --trainer.max_step " in str(err.value)


def test_cross_field_errors_still_name_the_flag():
    with pytest.raises(ConfigError, match="set by --optim.min_lr"):
        load_run_config("ttt_linear_debug", {"optim.min_lr": 1.0})


def test_prepare_unknown_dataset_is_an_argument_error(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "imagenet"])
    assert "invalid choice" in capsys.readouterr().err


def test_prepare_index_of_a_missing_folder_is_an_error_that_creates_nothing(capsys, tmp_path):
    missing = tmp_path / "typo"
    assert main(["prepare", "index", str(missing)]) == 2
    assert f"{missing}: not found (index scans a folder of videos)" in capsys.readouterr().err
    assert not missing.exists()


def test_validate_help_without_a_checkpoint_shows_the_usage(capsys):
    assert main(["validate", "--help"]) == 0
    assert "--ckpt CKPT --help lists that run's fields" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["validate"])
    assert "--ckpt is required" in capsys.readouterr().err


def test_unreadable_training_data_is_one_error_line(monkeypatch, capsys):
    from ttt_video.apps import cli
    from ttt_video.data.video.errors import UnreadableDataError

    def most_videos_unreadable(args, extra, parser):
        raise UnreadableDataError("3 of the 5 training items of epoch 0 had an unreadable video")

    monkeypatch.setattr(cli, "_fit", most_videos_unreadable)
    assert main(["fit", "--config", "any"]) == 2
    assert capsys.readouterr().err == (
        "ttt-video fit: error: 3 of the 5 training items of epoch 0 had an unreadable video\n"
    )


def test_warnings_are_written_above_the_progress_bars(monkeypatch, capsys):
    """'skipping FILE: reason' goes through tqdm.write, which lifts a running bar off the line."""
    from ttt_video.apps import cli

    written = []
    monkeypatch.setattr(cli.tqdm, "write", lambda text, file=None: written.append(text))
    main(["list", "tasks"])  # any command sets it up
    logging.getLogger("ttt_video.data.video.folder").warning("skipping a.mp4: not a video")
    logging.getLogger("ttt_video.data.video.folder").info("not shown")
    assert written == ["skipping a.mp4: not a video"]
