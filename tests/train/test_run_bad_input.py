"""Bad configs, data and checkpoints give one clear error and leave no run folder behind."""

from __future__ import annotations

import pytest
import torch
import yaml

from ttt_video.apps.cli import main
from ttt_video.train.config import ConfigError, parse_overrides
from ttt_video.train.runner import AtomicCheckpointIO
from ttt_video.train.tasks import load_run_config


def error_of(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_unknown_field_names_field_and_file(write_config, tmp_path, capsys):
    cfg = write_config(model={"num_layerz": 2})
    err = error_of(capsys, ["fit", "--config", str(cfg)])
    assert str(cfg) in err and "model.num_layerz: unknown field" in err
    assert not (tmp_path / "runs").exists()


def test_unknown_override_names_the_flag(write_config, capsys):
    err = error_of(capsys, ["fit", "--config", str(write_config()), "--trainer.max_stepz", "3"])
    assert "trainer.max_stepz: unknown field" in err and "--trainer.max_stepz" in err


def test_inconsistent_width_and_heads(write_config, tmp_path, capsys):
    cfg = write_config()
    err = error_of(capsys, ["fit", "--config", str(cfg), "--model.num_heads", "3"])
    assert "model.width: 32 is not divisible by num_heads=3" in err
    assert "--model.num_heads" in err
    assert not (tmp_path / "runs").exists()


def test_wrong_type_and_value(write_config, capsys):
    cfg = write_config(trainer={"precision": "16"})
    assert "trainer.precision: expected one of 32, bf16-mixed" in error_of(
        capsys, ["fit", "--config", str(cfg)]
    )
    cfg = write_config(data={"batch_size": "eight"})
    assert "data.batch_size: expected an integer" in error_of(capsys, ["fit", "--config", str(cfg)])
    cfg = write_config(task="lm_typo")
    assert "task: unknown task 'lm_typo'" in error_of(capsys, ["fit", "--config", str(cfg)])


def test_missing_config_file(tmp_path, capsys):
    err = error_of(capsys, ["fit", "--config", str(tmp_path / "nope.yaml")])
    assert "nope.yaml: config file not found" in err


def test_missing_data_says_how_to_make_it(write_config, tmp_path, capsys):
    cfg = write_config(
        data={"path": str(tmp_path / "no_shards"), "prepare": "ttt-video prepare austen"}
    )
    err = error_of(capsys, ["fit", "--config", str(cfg)])
    assert "no_shards holds no token shards" in err and "ttt-video prepare austen" in err
    assert f"ttt-video prepare text --input FILE_OR_FOLDER --out {tmp_path / 'no_shards'}" in err
    assert not (tmp_path / "runs").exists()


def test_a_block_longer_than_the_training_split_names_block_len(write_config, tmp_path, capsys):
    err = error_of(capsys, ["fit", "--config", str(write_config()), "--data.block_len", "10000000"])
    assert "data.block_len: 10000000 tokens per sample, but the training split of" in err
    assert not (tmp_path / "runs").exists()


def test_vocab_too_small(write_config, capsys):
    cfg = write_config(model={"vocab_size": 100})
    assert "model.vocab_size: 100 is smaller" in error_of(capsys, ["fit", "--config", str(cfg)])


def test_tokens_per_step_must_divide(write_config, capsys):
    cfg = write_config(trainer={"tokens_per_step": 200})
    assert "trainer.tokens_per_step: 200 is not a multiple of the 128" in error_of(
        capsys, ["fit", "--config", str(cfg)]
    )


def test_missing_checkpoint(capsys, tmp_path):
    err = error_of(capsys, ["generate", "--ckpt", str(tmp_path / "x.ckpt"), "--prompt", "a"])
    assert "x.ckpt not found" in err


def test_overrides_parse_yaml_values():
    got = parse_overrides(
        ["--a.b", "4", "--c=1e-3", "--d", "[0.9, 0.95]", "--e", "null", "--f", "true"]
    )
    assert got == {"a.b": 4, "c": "1e-3", "d": [0.9, 0.95], "e": None, "f": True}
    with pytest.raises(ConfigError, match="--x needs a value"):
        parse_overrides(["--x"])
    with pytest.raises(ConfigError, match="expected --section.field VALUE"):
        parse_overrides(["oops"])


def test_yaml_1_1_floats_are_numbers(write_config):
    run = load_run_config(write_config(optim={"lr": "3e-3"}))
    assert run.optim.lr == 3e-3


def test_atomic_checkpoint_never_leaves_a_truncated_file(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(3)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(3), "bad": Unpicklable()}, path)
    assert torch.load(path)["w"].tolist() == [1.0, 1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_existing_run_folder_needs_resume(write_config, tmp_path, capsys):
    cfg = write_config()
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(yaml.safe_dump({"state": "failed"}))
    assert "pass --resume auto" in error_of(capsys, ["fit", "--config", str(cfg)])


def test_resume_with_another_model_shape_names_the_field_and_keeps_the_run(
    write_config, tmp_path, capsys
):
    cfg = str(write_config())
    assert main(["fit", "--config", cfg]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    kept = {p: p.read_bytes() for p in (run_dir / "config.yaml", run_dir / "status.json")}
    err = error_of(capsys, ["fit", "--config", cfg, "--resume", "auto", "--model.width", "64"])
    assert "holds a model of other shapes (model.width: 32 in the checkpoint, 64 now)" in err
    assert all(p.read_bytes() == data for p, data in kept.items())  # nothing rewritten


def test_ctrl_c_is_recorded_as_interrupted_not_failed(write_config, tmp_path, monkeypatch):
    from ttt_video.train.lm_module import LMModule
    from ttt_video.train.runner import fit

    def pressed_ctrl_c(self, batch, batch_idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(LMModule, "training_step", pressed_ctrl_c)
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning exits with status 1
        fit(load_run_config(write_config()))
    status = yaml.safe_load((tmp_path / "runs" / "tiny" / "status.json").read_text())
    assert status["state"] == "interrupted" and status["step"] == 0


def test_resume_from_a_file_torch_did_not_write_is_one_error_line(write_config, tmp_path, capsys):
    junk = tmp_path / "junk.ckpt"
    junk.write_text("notes, not a checkpoint\n")
    err = error_of(capsys, ["fit", "--config", str(write_config()), "--resume", str(junk)])
    assert f"--resume: {junk}: not a file written by torch.save" in err
    assert not (tmp_path / "runs").exists()
