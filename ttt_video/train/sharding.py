"""Sharded data-parallel training (``trainer.strategy: fsdp``): PyTorch's ``fully_shard``
(FSDP2) through Lightning's ``ModelParallelStrategy``, on GPUs (NCCL) and CPUs (gloo) alike.

- :func:`shard_blocks` makes one shard unit per residual ``Block`` plus the root (the
  embeddings and heads, or the frame encoder and decoder). A unit's parameters are gathered
  just before its forward (and again before its backward) and freed after; gradients are
  reduce-scattered, so each of ``N`` processes keeps ``1/N`` of the parameters, gradients
  and optimiser state. Each process reads its own micro-batch, as with DDP.
- ``bf16-mixed``: a ``MixedPrecisionPolicy`` (parameters gathered in bf16 for the compute,
  gradients reduced in fp32, fp32 master weights in the optimiser), besides Lightning's
  autocast.
- ``trainer.gradient_checkpointing`` recomputes each block inside its shard unit, as without
  sharding (``Block.forward``).
- Checkpoints are folders (``last.ckpt/``: one ``.distcp`` file per process, ``.metadata``
  and ``meta.pt``, which holds the loop state and the run). Each is written to a hidden
  folder next to it, then renamed, so a crash never leaves a partial folder under the final
  name. They resume on any number of processes, and :func:`read_sharded_checkpoint` gathers
  their weights in one process without a process group: ``ttt_video.load``,
  ``runner.load_module`` and ``ttt-video validate|generate|eval-lm|export`` take the folder
  as they take a ``.ckpt`` file (``ttt-video export`` makes it a ``save_pretrained`` folder).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed.checkpoint as dcp
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from ttt_video.layers import Block
from ttt_video.models.pretrained import torch_load_safe

SHARDED_META = "meta.pt"
"""The file of a sharded checkpoint folder that holds everything but the tensors (Lightning's
name for it)."""


def shard_blocks(model: nn.Module, mesh, mp_policy: MixedPrecisionPolicy) -> None:
    """Shard ``model`` in place over ``mesh`` (a 1-D ``DeviceMesh``): one ``fully_shard`` unit
    per ``Block``, then the root for the remaining parameters. Does nothing when ``model`` is
    sharded already."""
    if isinstance(model, FSDPModule):
        return
    # Blocks and models return their recurrent state (views) with the output; FSDP warns that
    # an in-place op on a view would skip its hooks, and training modifies none in place.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDP\w+\) returned a view")
    for module in model.modules():
        if isinstance(module, Block):
            fully_shard(module, mesh=mesh, mp_policy=mp_policy)
    fully_shard(model, mesh=mesh, mp_policy=mp_policy)


class ShardedBlocksStrategy(ModelParallelStrategy):
    """FSDP2 over all processes (no tensor parallelism), one shard unit per ``Block``.

    Shards ``pl_module.model`` when the module's ``configure_model`` hook calls
    :func:`configure_sharding`; saves checkpoints as folders, atomically (module docstring).

    Args:
        world_size: processes in all (``num_nodes * devices``).
        bf16: compute in bf16 (``precision: bf16-mixed``): the mixed precision policy.
    """

    def __init__(self, world_size: int, bf16: bool) -> None:
        super().__init__(data_parallel_size=world_size, tensor_parallel_size=1)
        self.mp_policy = (
            MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
            if bf16
            else MixedPrecisionPolicy()
        )

    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath, storage_options: Any = None
    ) -> None:
        """Write the sharded folder next to ``filepath`` (hidden), then rename it there."""
        path = Path(self.broadcast(filepath))
        tmp = path.with_name(f".{path.name}.tmp")
        if self.global_rank == 0 and tmp.exists():
            shutil.rmtree(tmp)  # left by a crash during a save
        self.barrier()
        super().save_checkpoint(checkpoint, tmp, storage_options)
        self.barrier()
        if self.global_rank == 0:
            replace_folder(tmp, path)
        self.barrier()


def replace_folder(new: Path, path: Path) -> None:
    """Rename ``new`` to ``path``, replacing what is there (a file or a folder).

    The old one is first renamed aside, so ``path`` is always absent, the old one or the new
    one, never partly written.
    """
    old = path.with_name(f".{path.name}.old")
    if old.is_dir():
        shutil.rmtree(old)
    if path.exists():
        path.rename(old)
    new.rename(path)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink(missing_ok=True)


def configure_sharding(pl_module: L.LightningModule) -> None:
    """Shard ``pl_module.model`` when the trainer's strategy is :class:`ShardedBlocksStrategy`
    (the ``configure_model`` hook of the task modules; repeated calls do nothing)."""
    strategy = pl_module.trainer.strategy
    if isinstance(strategy, ShardedBlocksStrategy):
        shard_blocks(pl_module.model, strategy.device_mesh["data_parallel"], strategy.mp_policy)


def is_sharded_checkpoint(path: str | Path) -> bool:
    """True for a checkpoint folder written by :class:`ShardedBlocksStrategy`."""
    return (Path(path) / SHARDED_META).is_file()


def read_sharded_checkpoint(path: str | Path) -> dict[str, Any]:
    """A sharded checkpoint folder as one full checkpoint in this process (CPU tensors).

    Returns ``meta.pt``'s mapping (the run, the loop state) with ``"state_dict"``: the
    LightningModule's full weights, gathered from every process's file (optimiser state is
    left out). Read with ``weights_only=True`` like a ``.ckpt`` file.
    """
    path = Path(path)
    checkpoint = torch_load_safe(path / SHARDED_META)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path / SHARDED_META}: not a checkpoint's metadata")
    prefix = "state_dict."
    weights = {
        key.removeprefix(prefix): torch.empty(item.size, dtype=item.properties.dtype)
        for key, item in dcp.FileSystemReader(path).read_metadata().state_dict_metadata.items()
        if key.startswith(prefix) and isinstance(item, TensorStorageMetadata)
    }
    with warnings.catch_warnings():  # that it reads in one process is the point here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load({"state_dict": weights}, checkpoint_id=path, no_dist=True)
    return {**checkpoint, "state_dict": weights}
