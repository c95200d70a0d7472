"""LightningModules of the video tasks: the loss, the optimiser and logging, nothing else.

Letters: ``B`` batch, ``F`` frames per clip, ``F0`` context frames, ``R`` predicted frames,
``C`` channels, ``S`` frame side, ``K`` classes.

Every video source yields the same batches, ``{"frames": uint8 [B, F, C, S, S], "label":
int64 [B]}`` (``"label"`` for classification only); ``frames_to_float`` makes the frames
float in [0, 1] (``ttt_video.data.video.frames``).

- ``VideoPredictModule``: next-frame MSE (or L1), teacher-forced on the whole clip; with
  ``rollout_training`` the last ``R`` frames are instead predicted from the model's own
  predictions (fed back; the gradient is cut at the feedback unless ``feedback_grad``), as at
  test time, and ``context_weight`` weighs the teacher-forced frames' loss against them
  (per frame). Validation rolls out
  ``R`` frames after ``F0`` and logs MSE per frame, PSNR, SSIM and the first clip's rollout
  as a captioned video (TensorBoard, and ``val_rollout.gif`` in the run folder).
- ``VideoClassifyModule``: cross-entropy of the per-frame readout at the last frame (or the
  mean over frames); top-1/top-5 (validation and test). ``window_frames`` shows the model only
  the last frames. Its ``class_names`` (the training data's class index) go into every
  checkpoint (``checkpoint["class_names"]``); a checkpoint of other classes does not load.

Unreadable video files (``ttt_video.data.video.folder``): training batches count them in
``"skipped"``; at the end of every epoch the module logs ``train/skipped_files`` (summed over
the loader workers, which fill the batches, and over the processes) with a log line, and
stops the run with an error when more than ``MAX_UNREADABLE`` of the epoch's items were
unreadable. Evaluation drops them (``val/skipped_files``, summed over the validation run).

Both train to ``time_budget_s`` seconds when it is given (``ttt_video.train.time_budget``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor

from ttt_video.data.video.errors import UnreadableDataError
from ttt_video.data.video.frames import frames_to_float
from ttt_video.data.video.writer import comparison_video, write_video
from ttt_video.models.compiling import compile_model
from ttt_video.models.video import VideoModel
from ttt_video.models.video_config import VideoConfig
from ttt_video.train.config import OptimConfig
from ttt_video.train.optim import adamw_with_schedule, warmup_steps
from ttt_video.train.sharding import configure_sharding
from ttt_video.train.time_budget import TimeBudget
from ttt_video.train.video_metrics import frame_metrics, topk_accuracy
from ttt_video.train.video_objectives import ClassifyObjective, PredictObjective

ROLLOUT_GIF = "val_rollout.gif"
"""The latest validation rollout, in the run folder."""
MAX_UNREADABLE = 0.5
"""Largest fraction of an epoch's training items whose video may be unreadable."""

log = logging.getLogger(__name__)


def clip_batch(batch: dict) -> tuple[Tensor, Tensor | None]:
    """A video batch -> ``(frames uint8 [B, F, C, S, S], labels int64 [B] or None)``."""
    return batch["frames"], batch.get("label")


class VideoModule(TimeBudget, L.LightningModule):
    """Optimiser, schedule and the time budget shared by the video modules."""

    def __init__(
        self,
        model_cfg: VideoConfig,
        optim: OptimConfig,
        total_steps: int,
        time_budget_s: float | None = None,
    ) -> None:
        super().__init__()
        self.model = VideoModel(model_cfg)
        self.optim, self.total_steps, self.time_budget_s = optim, total_steps, time_budget_s
        self.warmup = warmup_steps(optim, total_steps)
        self._unreadable: list[int] | None = None  # [unreadable, items] of the epoch so far

    def on_train_epoch_start(self) -> None:
        self._unreadable = None

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if "skipped" in batch:
            counts = self._unreadable or [0, 0]
            self._unreadable = [counts[0] + int(batch["skipped"]), counts[1] + len(batch["frames"])]
        self.stop_when_spent()

    def on_train_epoch_end(self) -> None:
        """Report the epoch's unreadable files (all processes); stop when most were."""
        if self._unreadable is None:
            return
        counts = torch.tensor(self._unreadable, dtype=torch.float32, device=self.device)
        skipped, items = self.trainer.strategy.reduce(counts, reduce_op="sum").tolist()
        self.log("train/skipped_files", skipped)
        if skipped and self.trainer.is_global_zero:
            log.warning(
                "epoch %d: %d of %d training items had an unreadable video (skipped; the files "
                "are named above)",
                self.current_epoch,
                skipped,
                items,
            )
        if skipped > MAX_UNREADABLE * items:
            raise UnreadableDataError(
                f"{skipped:.0f} of the {items:.0f} training items of epoch {self.current_epoch} "
                f"had an unreadable video (more than {MAX_UNREADABLE:.0%}): check the files the "
                "log names (ttt-video prepare index lists the unreadable ones)"
            )

    def log_skipped(self, batch) -> None:
        """Count an evaluation batch's unreadable files in ``val/skipped_files``."""
        if "skipped" in batch:
            self.log("val/skipped_files", float(batch["skipped"]), reduce_fx="sum", sync_dist=True)

    def tokens_in(self, batch) -> int:
        """Tokens the backbone reads in ``batch`` (for throughput)."""
        frames, _ = clip_batch(batch)
        return frames.shape[0] * frames.shape[1] * self.model.tokens_per_frame

    def flops_per_token(self) -> float:
        """Training FLOPs per token, ``6 * parameters`` (inner-loop FLOPs excluded)."""
        return 6.0 * self.model.num_parameters()

    def configure_model(self) -> None:
        """Shard the model over the processes when ``trainer.strategy`` is ``fsdp``, then
        compile it when its config says ``compile``."""
        configure_sharding(self)
        if self.model.cfg.compile:
            compile_model(self.model)

    def configure_optimizers(self):
        return adamw_with_schedule(
            self.model, self.optim, self.total_steps, self.warmup, progress=self.progress
        )


class VideoPredictModule(VideoModule):
    """Frame prediction (see the module docstring).

    Args:
        num_input: ``F0`` context frames of the evaluation protocol.
        num_output: ``R`` frames rolled out at evaluation (and in ``rollout_training``).
        objective: the loss and rollout training (``PredictObjective``, validated when built).
    """

    def __init__(
        self,
        model_cfg: VideoConfig,
        optim: OptimConfig,
        total_steps: int,
        num_input: int,
        num_output: int,
        objective: PredictObjective | None = None,
        time_budget_s: float | None = None,
    ) -> None:
        super().__init__(model_cfg, optim, total_steps, time_budget_s)
        self.num_input, self.num_output = num_input, num_output
        self.objective = objective or PredictObjective()

    def pixel_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean per-pixel loss of ``[B, F, C, S, S]`` predictions."""
        if self.objective.loss == "l1":
            return F.l1_loss(pred, target)
        return F.mse_loss(pred, target)

    def loss(self, frames: Tensor) -> Tensor:
        """Training loss of a clip ``frames [B, F, C, S, S]`` (uint8 or float)."""
        x, o = frames_to_float(frames), self.objective
        if not o.rollout_training:
            return self.pixel_loss(self.model(x[:, :-1]).next_frames, x[:, 1:])
        F0, R = x.shape[1] - self.num_output, self.num_output
        out = self.model(x[:, :F0])
        detach = not o.feedback_grad
        rolled, _ = self.model.feed_back(out.next_frames[:, -1], R, out.state, detach=detach)
        loss = self.pixel_loss(rolled, x[:, F0:])
        if F0 == 1:
            return loss
        w = o.context_weight * (F0 - 1)
        return (w * self.pixel_loss(out.next_frames[:, :-1], x[:, 1:F0]) + R * loss) / (w + R)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        frames, _ = clip_batch(batch)
        loss = self.loss(frames)
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0])
        return loss

    def evaluate(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Roll out ``R`` frames after the first ``F0``: (predictions, targets) ``[B, R, ...]``."""
        x = frames_to_float(frames)
        context, target = x[:, : self.num_input], x[:, self.num_input :][:, : self.num_output]
        preds, _ = self.model.rollout(context, target.shape[1])
        return preds, target

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log_skipped(batch)
        frames, _ = clip_batch(batch)
        if frames is None:  # every file of the batch was unreadable
            return
        preds, target = self.evaluate(frames)
        metrics = frame_metrics(preds, target)
        B = frames.shape[0]
        for name, value in metrics.items():
            self.log(f"val/{name}", value, batch_size=B, prog_bar=name == "mse", sync_dist=True)
        self.log("val/loss", self.pixel_loss(preds, target), batch_size=B, sync_dist=True)
        if batch_idx == 0:
            self.log_rollout(target[0], preds[0])

    def log_rollout(self, truth: Tensor, pred: Tensor) -> None:
        """Truth | prediction of one rollout (``[R, C, S, S]`` each) as a captioned video.

        Written by the first process when the trainer has loggers: ``val_rollout.gif`` in the
        run folder (the latest validation's), and the same GIF in TensorBoard under
        ``val/rollout`` at the step (what ``SummaryWriter.add_video`` writes, without its
        moviepy dependency), played in the Images tab.
        """
        if not self.loggers or not self.trainer.is_global_zero:
            return
        scale = max(1, 128 // truth.shape[-1])
        video = comparison_video(truth, pred.clamp(0, 1), 0, "prediction", scale)
        gif = write_video(Path(self.trainer.default_root_dir) / ROLLOUT_GIF, video, fps=4)
        image = Summary.Image(
            height=video.shape[-2],
            width=video.shape[-1],
            colorspace=3,
            encoded_image_string=gif.read_bytes(),
        )
        summary = Summary(value=[Summary.Value(tag="val/rollout", image=image)])
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment._get_file_writer().add_summary(summary, self.global_step)


class VideoClassifyModule(VideoModule):
    """Per-frame classification read at the end of the clip (see the module docstring).

    Args:
        objective: the readout and window (``ClassifyObjective``, validated when built).
        class_names: the name of each class index (the training data's), saved in checkpoints.
    """

    def __init__(
        self,
        model_cfg: VideoConfig,
        optim: OptimConfig,
        total_steps: int,
        objective: ClassifyObjective | None = None,
        time_budget_s: float | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__(model_cfg, optim, total_steps, time_budget_s)
        self.objective = objective or ClassifyObjective()
        self.class_names = list(class_names) if class_names else None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.class_names:
            checkpoint["class_names"] = self.class_names

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """``ValueError`` when the checkpoint's classes are not this module's (labels would
        name other classes)."""
        saved = checkpoint.get("class_names")
        if saved and self.class_names and saved != self.class_names:
            raise ValueError(
                f"class_names: the checkpoint was trained on classes {saved}, the data now has "
                f"{self.class_names}; its label indices would name other classes"
            )

    def logits(self, frames: Tensor) -> Tensor:
        """``frames [B, F, C, S, S]`` -> per-frame logits ``[B, F', K]`` (``F'`` the window)."""
        window = self.objective.window_frames
        if window is not None:
            frames = frames[:, -window:]
        return self.model(frames).logits

    def loss_and_final(self, batch) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, final logits ``[B, K]``, labels ``[B]``) of a batch."""
        frames, labels = clip_batch(batch)
        logits = self.logits(frames)
        if self.objective.readout == "last":
            loss = F.cross_entropy(logits[:, -1], labels)
        else:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(logits.shape[1]))
        return loss, logits[:, -1], labels

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss, final, labels = self.loss_and_final(batch)
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.log("train/top1", topk_accuracy(final, labels, 1), sync_dist=True)
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0])
        return loss

    def evaluate(self, batch, split: str) -> None:
        """Log ``<split>/loss``, ``top1`` and ``top5`` of an evaluation batch."""
        if batch["frames"] is None:  # every file of the batch was unreadable
            return
        loss, final, labels = self.loss_and_final(batch)
        B = labels.shape[0]
        self.log(f"{split}/loss", loss, batch_size=B, sync_dist=True)
        top1 = topk_accuracy(final, labels, 1)
        self.log(f"{split}/top1", top1, batch_size=B, prog_bar=split == "val", sync_dist=True)
        self.log(f"{split}/top5", topk_accuracy(final, labels, 5), batch_size=B, sync_dist=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log_skipped(batch)
        self.evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.evaluate(batch, "test")
