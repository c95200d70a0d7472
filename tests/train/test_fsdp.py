"""Sharded training (``trainer.strategy: fsdp``: PyTorch's ``fully_shard``, one unit per Block)
on two CPU processes over gloo: the single-process losses, an exact resume from a sharded
checkpoint folder, which loads and validates in one process; bf16 with the mixed precision
policy (fp32 master weights)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed.checkpoint as dcp
from test_ddp import fit

import ttt_video
from ttt_video.apps.cli import main
from ttt_video.train.config import TrainerConfig
from ttt_video.train.runner import load_run_from_checkpoint, make_strategy, validate
from ttt_video.train.sharding import (
    SHARDED_META,
    ShardedBlocksStrategy,
    is_sharded_checkpoint,
    read_sharded_checkpoint,
    replace_folder,
)

SHARDED = ("--trainer.devices", "2", "--trainer.strategy", "fsdp", "--data.batch_size", "2")


@pytest.mark.slow
def test_sharded_run_matches_one_process_resumes_and_loads(write_config, tmp_path, losses):
    """Two blocks with gradient checkpointing; the sharded run stops after 2 of 4 steps and
    resumes from its checkpoint folder (one file per process)."""
    cfg = write_config(model={"num_layers": 2}, trainer={"gradient_checkpointing": True})
    assert main(["fit", "--config", str(cfg), "--name", "single"]) == 0
    split = (*SHARDED, "--optim.schedule_steps", "4")
    fit(cfg, "sharded", *split, "--trainer.max_steps", "2")
    last = tmp_path / "runs" / "sharded" / "checkpoints" / "last.ckpt"
    assert last.is_dir() and len(list(last.glob("*.distcp"))) == 2
    assert (last / SHARDED_META).is_file()
    fit(cfg, "sharded", *split, "--resume", "auto")

    single, sharded = losses(tmp_path / "runs" / "single"), losses(tmp_path / "runs" / "sharded")
    assert sorted(single) == sorted(sharded) == [0, 1, 2, 3]
    for step in single:  # steps 2 and 3 ran after the resume
        assert sharded[step] == pytest.approx(single[step], rel=1e-5), step

    reference = ttt_video.load(tmp_path / "runs" / "single" / "checkpoints" / "last.ckpt")
    gathered = ttt_video.load(last)
    assert gathered.state_dict().keys() == reference.state_dict().keys()
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(gathered.state_dict()[name], tensor, rtol=1e-4, atol=1e-5)
    run, _ = load_run_from_checkpoint(last)
    ref_run, _ = load_run_from_checkpoint(tmp_path / "runs" / "single" / "checkpoints/last.ckpt")
    run.data.batch_size = ref_run.data.batch_size  # the same validation batches
    metrics = validate(run, last, device="cpu")
    ref_metrics = validate(ref_run, tmp_path / "runs" / "single" / "checkpoints/last.ckpt", "cpu")
    assert metrics["val/loss"] == pytest.approx(ref_metrics["val/loss"], rel=1e-5)


@pytest.mark.slow
def test_sharded_bf16_run_follows_one_process(write_config, tmp_path, losses):
    cfg = write_config(trainer={"max_steps": 2, "precision": "bf16-mixed"})
    assert main(["fit", "--config", str(cfg), "--name", "single"]) == 0
    fit(cfg, "sharded", *SHARDED)
    single, sharded = losses(tmp_path / "runs" / "single"), losses(tmp_path / "runs" / "sharded")
    assert sorted(single) == sorted(sharded) == [0, 1]
    for step in single:  # parameters gathered in bf16 there, autocast alone here
        assert sharded[step] == pytest.approx(single[step], rel=5e-3), step
    weights = read_sharded_checkpoint(tmp_path / "runs/sharded/checkpoints/last.ckpt")
    assert {t.dtype for t in weights["state_dict"].values()} == {torch.float32}  # master copy


def test_fsdp_is_a_sharded_strategy_on_cpu():
    """``fsdp`` without a GPU builds the FSDP2 strategy (no error), with the precision policy."""
    bf16 = make_strategy(
        TrainerConfig(strategy="fsdp", accelerator="cpu", devices=2, precision="bf16-mixed")
    )
    assert isinstance(bf16, ShardedBlocksStrategy)
    assert (bf16.mp_policy.param_dtype, bf16.mp_policy.reduce_dtype) == (
        torch.bfloat16,
        torch.float32,
    )
    fp32 = make_strategy(TrainerConfig(strategy="fsdp", accelerator="cpu", devices=2))
    assert fp32.mp_policy.param_dtype is None
    assert make_strategy(TrainerConfig(strategy="ddp")) == "ddp"


def test_replace_folder_swaps_in_the_new_one(tmp_path):
    path, new = tmp_path / "last.ckpt", tmp_path / ".last.ckpt.tmp"
    path.write_bytes(b"a single-file checkpoint")
    for content in ("first", "second"):
        new.mkdir()
        (new / "shard").write_text(content)
        replace_folder(new, path)
        assert path.is_dir() and (path / "shard").read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # nothing left aside


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # saved by one process
def test_read_sharded_checkpoint_gathers_the_weights_only(tmp_path):
    """A checkpoint folder as the strategy writes it (tensors through torch.distributed
    .checkpoint, the rest in meta.pt), read back in one process without a process group."""
    weights = {"model.w": torch.randn(4, 3), "model.b": torch.arange(5.0)}
    optimizer = {"state": {"model.w": {"exp_avg": torch.ones(4, 3)}}}
    folder = tmp_path / "last.ckpt"
    dcp.save({"state_dict": weights, "optimizer_0": optimizer}, checkpoint_id=folder, no_dist=True)
    torch.save({"global_step": 7, "run_config": {"task": "lm"}}, folder / SHARDED_META)
    assert is_sharded_checkpoint(folder) and not is_sharded_checkpoint(folder / SHARDED_META)
    checkpoint = read_sharded_checkpoint(folder)
    assert sorted(checkpoint) == ["global_step", "run_config", "state_dict"]
    assert checkpoint["state_dict"].keys() == weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(checkpoint["state_dict"][name], tensor)
