"""Build and run the Lightning Trainer for any registered task.

Run folder ``<out_dir>/<name>/``::

    config.yaml             the resolved run (loads back to the same run)
    classes.json            classification: the class names, by label index (the training
                            data's; also ``checkpoint["class_names"]``, ``load_class_names``)
    status.json             {"state": "running" | "completed" | "interrupted" (Ctrl-C) |
                            "failed", ...}; only a "completed" run finished, whatever else
                            the folder holds
    checkpoints/last.ckpt   every ``checkpoint_every`` steps and at the end
    checkpoints/best.ckpt   lowest ``val/loss`` so far (from the first validation during
                            training: every ``val_check_interval`` steps)
    logs/version_<i>/metrics.csv, tb/version_<i>/   CSV and TensorBoard logs, one
                            version per (re)start (``trainer.logger``: TensorBoard, wandb,
                            mlflow or none besides the CSV log, which is always written;
                            each logger gets the resolved run as hyperparameters)
    report.md, training.png the run for a person (``train/run_report.py``), written when it
                            completes
    val_rollout.gif         video prediction: the latest validation rollout

Checkpoints are written to a hidden temporary file, flushed to disk, then renamed over
the final name, so a crash never leaves a truncated file under a valid name. With
``trainer.strategy: fsdp`` each checkpoint is a folder of shards, written and renamed the
same way (``train/sharding.py``); everything below takes either. Each
checkpoint also stores the resolved run (``checkpoint["run_config"]``), from which
``load_run_from_checkpoint`` rebuilds the module for ``validate``/``generate``/``eval-lm``
and ``load_model`` the bare model.

Checkpoints are read with ``torch.load(weights_only=True)``, here and in Lightning's resume
and validation: ours hold only tensors and plain data (the Lightning state, optimiser and
scheduler state dicts, callback states, the run as a plain mapping), and a file holding
anything else (pickled classes or functions, which loading would run) is refused.

Throughput: ``perf/tokens_per_s`` (all devices) and ``perf/mfu`` = ``flops_per_token *
tokens_per_s / (world_size * peak_flops)``, the model FLOP utilisation with the module's
``flops_per_token`` (``6 N`` for the LM). ``peak_flops`` is ``trainer.peak_flops`` when set,
else the datasheet's dense peak of a known GPU in the run's matmul dtype (bf16, tf32 or
fp32), else (an unknown GPU, a CPU) measured at start as the best rate of a square matmul,
an achievable peak against which MFU reads higher (``train/peak_flops.py``); the log says
which.

Validation and resume errors happen before anything is written: a config, task or data
error leaves no run folder behind.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn

from ttt_video.devices import resolve_device
from ttt_video.io_utils import atomic_open, write_atomic, write_json
from ttt_video.models.pretrained import CONFIG_FILE, torch_load_safe
from ttt_video.train.config import (
    ConfigError,
    RunConfig,
    TrainerConfig,
    dump_yaml,
    resolved_dict,
)
from ttt_video.train.peak_flops import matmul_dtype, peak_flops
from ttt_video.train.run_report import write_run_report
from ttt_video.train.sharding import (
    ShardedBlocksStrategy,
    is_sharded_checkpoint,
    read_sharded_checkpoint,
)
from ttt_video.train.tasks import build_run_config, get_task

CHECKPOINTS = "checkpoints"
STATUS = "status.json"
CLASSES = "classes.json"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file, fsync, rename (never a truncated ``*.ckpt``)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as f:
            torch.save(checkpoint, f)


class RunConfigInCheckpoint(Callback):
    """Store the resolved run in every checkpoint (``checkpoint["run_config"]``)."""

    def __init__(self, run_config: dict) -> None:
        self.run_config = run_config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["run_config"] = self.run_config


class LastCheckpoint(Callback):
    """Save ``last.ckpt`` every ``every`` optimiser steps and when training ends."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every, self.saved_at = path, every, -1

    def _save(self, trainer) -> None:
        if trainer.global_step != self.saved_at:
            trainer.save_checkpoint(self.path, weights_only=False)
            self.saved_at = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if stepped and trainer.global_step % self.every == 0:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer)


class Throughput(Callback):
    """Log ``perf/tokens_per_s`` and ``perf/mfu`` every ``log_every`` optimiser steps.

    ``peak_flops``: one device's peak FLOP/s (None: the datasheet's for a known GPU, else
    measured at start; ``ttt_video.train.peak_flops``); the log says which it used.
    """

    def __init__(self, log_every: int, peak_flops: float | None, precision: str) -> None:
        self.log_every, self.peak_flops, self.precision = log_every, peak_flops, precision
        self.tokens, self.t0 = 0, None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.peak_flops is None:
            dtype = matmul_dtype(self.precision, torch.backends.cuda.matmul.allow_tf32)
            self.peak_flops, source = peak_flops(pl_module.device, dtype)
        else:
            source = "trainer.peak_flops"
        rank_zero_info(f"MFU: peak {self.peak_flops / 1e12:.4g} TFLOP/s per device ({source})")
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not hasattr(pl_module, "tokens_in"):
            return
        self.tokens += pl_module.tokens_in(batch) * trainer.world_size
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if not (stepped and trainer.global_step % self.log_every == 0):
            return
        rate = self.tokens / max(time.perf_counter() - self.t0, 1e-9)
        metrics = {"perf/tokens_per_s": rate}
        if hasattr(pl_module, "flops_per_token"):
            flops = pl_module.flops_per_token() * rate
            metrics["perf/mfu"] = flops / (trainer.world_size * self.peak_flops)
        pl_module.log_dict(metrics, prog_bar=False)
        self.tokens, self.t0 = 0, time.perf_counter()


def world_size(cfg: TrainerConfig) -> int:
    """Processes the run will use: ``num_nodes * devices`` (``"auto"``: visible GPUs or 1)."""
    devices = cfg.devices
    if devices == "auto":
        use_gpu = cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        devices = torch.cuda.device_count() if use_gpu else 1
    return cfg.num_nodes * int(devices)


def accumulation(run: RunConfig) -> int:
    """Micro-batches per optimiser step (from ``tokens_per_step`` when set)."""
    t = run.trainer
    if t.tokens_per_step is None:
        return t.accumulate_grad_batches
    per_batch = getattr(run.data, "tokens_per_batch", None)
    if per_batch is None:
        raise ConfigError(f"trainer.tokens_per_step: task {run.task!r} does not count tokens")
    per_step = per_batch * world_size(t)
    if t.tokens_per_step % per_step:
        raise ConfigError(
            f"trainer.tokens_per_step: {t.tokens_per_step} is not a multiple of the "
            f"{per_step} tokens of one micro-batch on all {world_size(t)} devices"
        )
    return t.tokens_per_step // per_step


def make_strategy(t: TrainerConfig):
    """Lightning strategy for ``"auto" | "ddp" | "fsdp"``.

    ``"fsdp"``: PyTorch's ``fully_shard`` with one shard unit per ``Block``, on GPUs and CPUs
    (``ttt_video.train.sharding``); checkpoints are then folders.
    """
    if t.strategy != "fsdp":
        return t.strategy
    return ShardedBlocksStrategy(world_size(t), bf16=t.precision.startswith("bf16"))


def lightning_device(device: torch.device) -> dict[str, Any]:
    """Trainer arguments (accelerator, devices, strategy, nodes) of one process on ``device``."""
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        return {"accelerator": "gpu", "devices": [index], "strategy": "auto", "num_nodes": 1}
    return {"accelerator": "cpu", "devices": 1, "strategy": "auto", "num_nodes": 1}


def build_loggers(run: RunConfig, run_dir: Path) -> list:
    """The CSV log and the loggers ``trainer.logger`` names, writing under ``run_dir``.

    ``ConfigError`` naming the pip package when wandb or mlflow is asked for but missing.
    TensorBoard's HParams tab gets the run (with its final validation metrics) when it
    completes (see :func:`fit`).
    """
    names = run.trainer.logger
    for name in ("wandb", "mlflow"):
        if name in names and importlib.util.find_spec(name) is None:
            raise ConfigError(
                f"trainer.logger: {name!r} needs its package, not installed here "
                f"(pip install {name}), or drop it from the list"
            )
    loggers: list = [CSVLogger(run_dir, name="logs")]
    if "tensorboard" in names:
        loggers.append(TensorBoardLogger(run_dir, name="tb", default_hp_metric=False))
    if "wandb" in names:
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(name=run.name, save_dir=run_dir, project="ttt_video"))
    if "mlflow" in names:
        from lightning.pytorch.loggers import MLFlowLogger

        mlruns = str(run_dir / "mlruns")
        loggers.append(MLFlowLogger("ttt_video", run_name=run.name, save_dir=mlruns))
    return loggers


class _Drop(logging.Filter):
    """Drops the records of one logger whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


_NOTICES = {
    "lightning.pytorch.utilities.rank_zero": "💡 Tip:",  # an advertisement for a cloud logger
    "torch.utils.cpp_extension": "No CUDA runtime is found",  # inductor on a CPU-only machine
}


def quiet_known_notices() -> None:
    """Hide what our dependencies print that says nothing about the run: Lightning's tip for
    its cloud logger, torch's note that a machine without a GPU has no CUDA runtime (when
    inductor compiles there), and torch's deprecation of ``LeafSpec`` raised from
    Lightning's own code. Idempotent."""
    for name, prefix in _NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_Drop(prefix))
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def build_trainer(
    run: RunConfig, run_dir: Path | None, resolved: dict, device: torch.device | None = None
) -> L.Trainer:
    """The Trainer of ``run``; ``run_dir=None`` for evaluation (no logs, no checkpoints).

    ``device`` replaces the run's accelerator, devices, strategy and nodes by one process on
    that device (evaluation); None keeps the run's own.
    """
    quiet_known_notices()
    t = run.trainer
    acc = accumulation(run)
    callbacks: list[Callback] = [RunConfigInCheckpoint(resolved)]
    loggers: list = []
    if run_dir is not None:
        ckpt = run_dir / CHECKPOINTS
        callbacks += [
            LastCheckpoint(ckpt / "last.ckpt", t.checkpoint_every or t.val_check_interval),
            ModelCheckpoint(
                dirpath=ckpt,
                filename="best",
                monitor="val/loss",
                mode="min",
                save_top_k=1,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            ),
            Throughput(t.log_every, t.peak_flops, t.precision),
        ]
        loggers = build_loggers(run, run_dir)
    if t.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, acc)))
    placement = (
        lightning_device(device)
        if device is not None
        else {
            "accelerator": t.accelerator,
            "devices": t.devices,
            "num_nodes": t.num_nodes,
            "strategy": make_strategy(t),
        }
    )
    return L.Trainer(
        **placement,
        precision=t.precision,
        max_steps=t.max_steps,
        max_epochs=-1,
        val_check_interval=t.val_check_interval * acc,
        check_val_every_n_epoch=None,
        limit_val_batches=t.limit_val_batches,
        accumulate_grad_batches=acc,
        gradient_clip_val=run.optim.grad_clip,
        log_every_n_steps=t.log_every,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_progress_bar=t.progress_bar,
        enable_checkpointing=run_dir is not None,
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=run_dir,
    )


def is_launch_primary() -> bool:
    """True in the process that owns the run folder (global rank 0 of the launch)."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    if "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"]) == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def resume_path(run_dir: Path, resume: str | None) -> Path | None:
    """Checkpoint to resume from: ``"auto"`` -> ``last.ckpt`` if present, else a path."""
    if resume is None:
        return None
    if resume == "auto":
        last = run_dir / CHECKPOINTS / "last.ckpt"
        return last if last.exists() else None
    path = Path(resume)
    if not path.exists():
        raise FileNotFoundError(f"--resume: checkpoint {path} not found")
    return path


def write_status(run_dir: Path, **status: Any) -> None:
    """Atomically replace ``status.json``."""
    write_json(run_dir / STATUS, status)


def _metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def fit(run: RunConfig, resume: str | None = None) -> dict[str, Any]:
    """Train ``run``; returns the final status (``state``, ``step``, metrics, paths).

    Raises ``ConfigError``/``FileNotFoundError``/``FileExistsError`` before the run folder is
    created when the config, data or resume target is wrong.
    """
    run_dir = run.run_dir
    ckpt = resume_path(run_dir, resume)
    if resume is None and (run_dir / STATUS).exists() and is_launch_primary():
        raise FileExistsError(
            f"{run_dir}: run folder exists; pass --resume auto to continue it, or --name NEW"
        )
    L.seed_everything(run.trainer.seed, workers=True, verbose=False)
    module, datamodule = get_task(run.task).build(run)
    resolved = resolved_dict(run)
    if ckpt is not None and ckpt.is_file():  # (a sharded folder is checked by its loader)
        check_resume_shapes(module, ckpt, resolved)
    trainer = build_trainer(run, run_dir, resolved)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / "config.yaml", dump_yaml(resolved))
        if class_names := getattr(module, "class_names", None):
            write_json(run_dir / CLASSES, class_names)
        write_status(run_dir, state="running", resumed_from=str(ckpt) if ckpt else None)
        for logger in trainer.loggers:
            logger.log_hyperparams(resolved)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        if trainer.global_step % run.trainer.val_check_interval:
            trainer.validate(module, datamodule=datamodule, verbose=False)
    except BaseException as err:
        if trainer.is_global_zero:  # Ctrl-C: Lightning stops the run and exits with status 1
            stopped = isinstance(err, (KeyboardInterrupt, SystemExit))
            state = "interrupted" if stopped else "failed"
            write_status(run_dir, state=state, step=trainer.global_step, error=repr(err))
        raise
    status = {"state": "completed", "step": trainer.global_step, **_metrics(trainer)}
    status["last_checkpoint"] = str(run_dir / CHECKPOINTS / "last.ckpt")
    if trainer.is_global_zero:
        write_status(run_dir, **status)
        final = {k: v for k, v in status.items() if k.startswith("val/")}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(resolved, final, step=trainer.global_step)
        write_run_report(run_dir)
    return status


def check_resume_shapes(module: L.LightningModule, ckpt: Path, resolved: dict) -> None:
    """``ConfigError`` before anything is written when the checkpoint to resume holds weights
    of other shapes than ``module`` (a model field changed since it was written), naming the
    model fields that differ. The file is memory-mapped: tensors are not read."""
    try:
        checkpoint = torch_load_safe(ckpt, mmap=True)
    except ValueError as err:
        raise ConfigError(f"--resume: {err}") from err
    stored = {k: tuple(v.shape) for k, v in checkpoint.get("state_dict", {}).items()}
    now = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if stored == now:
        return
    before = checkpoint.get("run_config", {}).get("model", {})
    changed = [
        f"model.{k}: {before.get(k)!r} in the checkpoint, {v!r} now"
        for k, v in resolved.get("model", {}).items()
        if before.get(k) != v
    ]
    raise ConfigError(
        f"--resume: {ckpt} holds a model of other shapes ({'; '.join(changed) or 'see the config'}"
        "); a resumed run keeps its model: drop those overrides, or start a new run (--name)"
    )


def load_run_from_checkpoint(ckpt: str | Path) -> tuple[RunConfig, dict]:
    """The resolved run stored in a checkpoint, and the checkpoint itself (read with
    ``weights_only=True``; ``ValueError`` for a file holding anything else). A sharded
    checkpoint folder (``trainer.strategy: fsdp``) comes back gathered, without its
    optimiser state."""
    path = Path(ckpt)
    check_checkpoint_path(path)
    checkpoint = read_sharded_checkpoint(path) if path.is_dir() else torch_load_safe(path)
    if not isinstance(checkpoint, dict) or "run_config" not in checkpoint:
        raise ConfigError(f"{path}: not a ttt-video checkpoint (no run_config)")
    return build_run_config(checkpoint["run_config"], str(path)), checkpoint


def check_checkpoint_path(path: Path) -> None:
    """``FileNotFoundError`` unless ``path`` is a run checkpoint: a file, or a sharded
    checkpoint folder; ``ConfigError`` for another folder (an exported model folder, a
    checkpoints folder) that says what to give instead."""
    if not path.exists():
        raise FileNotFoundError(f"--ckpt: checkpoint {path} not found")
    if not path.is_dir() or is_sharded_checkpoint(path):
        return
    if (path / CONFIG_FILE).is_file():
        raise ConfigError(
            f"--ckpt: {path} is an exported model folder (load it with ttt_video.load); this "
            "command needs the run's checkpoint, e.g. runs/NAME/checkpoints/last.ckpt"
        )
    inside = sorted(p.name for p in path.glob("*.ckpt"))
    hint = f" ({path} has {', '.join(inside[:4])})" if inside else ""
    raise ConfigError(f"--ckpt: {path} is a folder; give a checkpoint file{hint}")


def model_from_checkpoint(run: RunConfig, checkpoint: dict) -> nn.Module:
    """The run's bare model (``LanguageModel``, ``VideoModel``) on the CPU with the weights of
    ``checkpoint`` (its LightningModule keys, ``model.*``), in eval mode; needs no data."""
    model = get_task(run.task).build_model(run)
    prefix = "model."
    model.load_state_dict(
        {
            k.removeprefix(prefix): v
            for k, v in checkpoint["state_dict"].items()
            if k.startswith(prefix)
        }
    )
    return model.eval()


def load_class_names(ckpt: str | Path) -> list[str] | None:
    """The class names (by label index) of a classification run's checkpoint, None when it
    has none (another task, or a checkpoint older than the class index)."""
    return load_run_from_checkpoint(ckpt)[1].get("class_names")


def load_model(ckpt: str | Path, device: str = "cpu") -> nn.Module:
    """The bare model of a run checkpoint in eval mode on ``device`` (``"auto"``, ``"cpu"``,
    ``"cuda"``, ``"cuda:N"``), without Lightning or the run's data."""
    target = resolve_device(device)
    run, checkpoint = load_run_from_checkpoint(ckpt)
    return model_from_checkpoint(run, checkpoint).to(target)


def load_module(
    ckpt: str | Path, device: str = "cpu"
) -> tuple[RunConfig, L.LightningModule, L.LightningDataModule]:
    """Rebuild the run's module (weights loaded, eval mode, on ``device``: ``"auto"``,
    ``"cpu"``, ``"cuda"``, ``"cuda:N"``) and data module from a checkpoint. Inputs must be
    moved to ``module.device`` by the caller."""
    target = resolve_device(device)
    run, checkpoint = load_run_from_checkpoint(ckpt)
    module, datamodule = get_task(run.task).build(run)
    module.load_state_dict(checkpoint["state_dict"])
    return run, module.to(target).eval(), datamodule


def validate(run: RunConfig, ckpt: str | Path, device: str | None = "auto") -> dict[str, float]:
    """Validation metrics of the checkpoint ``ckpt`` under ``run``'s data.

    ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``): one process on that device;
    None: the run's own accelerator, devices, strategy and nodes (e.g. several GPUs).
    """
    target = None if device is None else resolve_device(device)
    check_checkpoint_path(Path(ckpt))
    module, datamodule = get_task(run.task).build(run)
    ckpt_path: str | None = str(ckpt)
    if target is not None and is_sharded_checkpoint(ckpt):  # one process: gather it here
        module.load_state_dict(read_sharded_checkpoint(ckpt)["state_dict"])
        ckpt_path = None
    run.trainer.progress_bar = False
    trainer = build_trainer(run, None, resolved_dict(run), target)
    trainer.validate(
        module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
    )
    return _metrics(trainer)
