"""LightningModules of the video tasks: the loss, the optimiser and logging, nothing else.

Letters: ``B`` batch, ``F`` frames per clip, ``F0`` context frames, ``R`` predicted frames,
``C`` channels, ``S`` frame side, ``K`` classes.

Batches are normalised by ``clip_batch``: Moving-MNIST-style ``(inputs, targets)`` pairs,
long-range ``(frames, label)`` pairs and manifest dicts ``{"frames", "label"}`` all become
``(frames uint8 [B, F, C, S, S], labels [B] or None)``.

- ``VideoPredictModule``: next-frame MSE (or L1), teacher-forced on the whole clip; with
  ``rollout_training`` the last ``R`` frames are instead predicted from the model's own
  predictions (fed back; the gradient is cut at the feedback unless ``feedback_grad``), as at
  test time, and ``context_weight`` weighs the teacher-forced frames' loss against them
  (per frame). Validation rolls out
  ``R`` frames after ``F0`` and logs MSE per frame, PSNR, SSIM and a sample image.
- ``VideoClassifyModule``: cross-entropy of the per-frame readout at the last frame (or the
  mean over frames); top-1/top-5. ``window_frames`` shows the model only the last frames.

Both stop training early once ``time_budget_s`` seconds have passed, and then decay the
learning rate on elapsed time instead of steps (whichever is further along), so a run on a
busy machine ends on time with a finished schedule.
"""

from __future__ import annotations

import time

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from ttt_video.models.video import VideoModel
from ttt_video.models.video_config import VideoConfig
from ttt_video.train.config import OptimConfig
from ttt_video.train.optim import adamw_with_schedule, warmup_steps
from ttt_video.train.video_metrics import frame_metrics, topk_accuracy


def clip_batch(batch) -> tuple[Tensor, Tensor | None]:
    """Any video batch -> ``(frames [B, F, C, S, S], labels [B] or None)`` (see module docstring)."""
    if isinstance(batch, dict):
        return batch["frames"], batch["label"]
    first, second = batch
    if second.ndim == 5:
        return torch.cat((first, second), dim=1), None
    return first, second


class VideoModule(L.LightningModule):
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
        self._start: float | None = None

    def progress(self, step: int) -> int:
        """The schedule step: ``step``, or further when the time budget is running out."""
        if self.time_budget_s is None or self._start is None:
            return step
        elapsed = (time.monotonic() - self._start) / self.time_budget_s
        return max(step, round(elapsed * self.total_steps))

    def on_train_start(self) -> None:
        self._start = time.monotonic()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.time_budget_s is not None and time.monotonic() - self._start > self.time_budget_s:
            self.trainer.should_stop = True

    def tokens_in(self, batch) -> int:
        """Tokens the backbone reads in ``batch`` (for throughput)."""
        frames, _ = clip_batch(batch)
        return frames.shape[0] * frames.shape[1] * self.model.tokens_per_frame

    def flops_per_token(self) -> float:
        """Training FLOPs per token, ``6 * parameters`` (inner-loop FLOPs excluded)."""
        return 6.0 * self.model.num_parameters()

    def configure_optimizers(self):
        return adamw_with_schedule(
            self.model, self.optim, self.total_steps, self.warmup, progress=self.progress
        )


class VideoPredictModule(VideoModule):
    """Frame prediction (see the module docstring).

    Args:
        num_input: ``F0`` context frames of the evaluation protocol.
        num_output: ``R`` frames rolled out at evaluation (and in ``rollout_training``).
        loss: ``"mse"`` or ``"l1"`` per pixel.
        rollout_training: train the last ``R`` frames on fed-back predictions.
        feedback_grad: back-propagate through the fed-back frames too (slower, closer to the
            test-time rollout).
        context_weight: with ``rollout_training``, the weight of each teacher-forced frame's
            loss relative to a rolled-out frame's (1: the plain mean over all frames).
    """

    def __init__(
        self,
        model_cfg: VideoConfig,
        optim: OptimConfig,
        total_steps: int,
        num_input: int,
        num_output: int,
        loss: str = "mse",
        rollout_training: bool = False,
        time_budget_s: float | None = None,
        feedback_grad: bool = False,
        context_weight: float = 1.0,
    ) -> None:
        super().__init__(model_cfg, optim, total_steps, time_budget_s)
        self.feedback_grad, self.context_weight = feedback_grad, context_weight
        if loss not in ("mse", "l1"):
            raise ValueError(f"loss: expected 'mse' or 'l1', got {loss!r}")
        self.num_input, self.num_output = num_input, num_output
        self.loss_name, self.rollout_training = loss, rollout_training

    def pixel_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean per-pixel loss of ``[B, F, C, S, S]`` predictions."""
        if self.loss_name == "l1":
            return F.l1_loss(pred, target)
        return F.mse_loss(pred, target)

    def loss(self, frames: Tensor) -> Tensor:
        """Training loss of a clip ``frames [B, F, C, S, S]`` (uint8 or float)."""
        x = frames.float() / 255 if frames.dtype == torch.uint8 else frames
        if not self.rollout_training:
            return self.pixel_loss(self.model(x[:, :-1]).next_frames, x[:, 1:])
        F0, R = x.shape[1] - self.num_output, self.num_output
        out = self.model(x[:, :F0])
        detach = not self.feedback_grad
        rolled, _ = self.model.feed_back(out.next_frames[:, -1], R, out.state, detach=detach)
        loss = self.pixel_loss(rolled, x[:, F0:])
        if F0 == 1:
            return loss
        w = self.context_weight * (F0 - 1)
        return (w * self.pixel_loss(out.next_frames[:, :-1], x[:, 1:F0]) + R * loss) / (w + R)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        frames, _ = clip_batch(batch)
        loss = self.loss(frames)
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0])
        return loss

    def evaluate(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Roll out ``R`` frames after the first ``F0``: (predictions, targets) ``[B, R, ...]``."""
        x = frames.float() / 255 if frames.dtype == torch.uint8 else frames
        context, target = x[:, : self.num_input], x[:, self.num_input :][:, : self.num_output]
        preds, _ = self.model.rollout(context, target.shape[1])
        return preds, target

    def validation_step(self, batch, batch_idx: int) -> None:
        frames, _ = clip_batch(batch)
        preds, target = self.evaluate(frames)
        metrics = frame_metrics(preds, target)
        B = frames.shape[0]
        for name, value in metrics.items():
            self.log(f"val/{name}", value, batch_size=B, prog_bar=name == "mse")
        self.log("val/loss", self.pixel_loss(preds, target), batch_size=B)
        if batch_idx == 0:
            self.log_sample(target[0], preds[0])

    def log_sample(self, truth: Tensor, pred: Tensor) -> None:
        """Log truth (top row) over prediction (bottom row), ``[R, C, S, S]`` each, to TensorBoard."""
        grid = torch.cat((torch.cat(list(truth), -1), torch.cat(list(pred), -1)), dim=-2)
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image("val/sample", grid.clamp(0, 1), self.global_step)


class VideoClassifyModule(VideoModule):
    """Per-frame classification read at the end of the clip (see the module docstring).

    Args:
        readout: ``"last"`` (loss on the last frame's logits) or ``"mean"`` (all frames).
        window_frames: show the model only the last this many frames (None: all of them).
    """

    def __init__(
        self,
        model_cfg: VideoConfig,
        optim: OptimConfig,
        total_steps: int,
        readout: str = "last",
        window_frames: int | None = None,
        time_budget_s: float | None = None,
    ) -> None:
        super().__init__(model_cfg, optim, total_steps, time_budget_s)
        if readout not in ("last", "mean"):
            raise ValueError(f"readout: expected 'last' or 'mean', got {readout!r}")
        self.readout, self.window_frames = readout, window_frames

    def logits(self, frames: Tensor) -> Tensor:
        """``frames [B, F, C, S, S]`` -> per-frame logits ``[B, F', K]`` (``F'`` the window)."""
        if self.window_frames is not None:
            frames = frames[:, -self.window_frames :]
        return self.model(frames).logits

    def loss_and_final(self, batch) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, final logits ``[B, K]``, labels ``[B]``) of a batch."""
        frames, labels = clip_batch(batch)
        logits = self.logits(frames)
        if self.readout == "last":
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

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, final, labels = self.loss_and_final(batch)
        B = labels.shape[0]
        self.log("val/loss", loss, batch_size=B)
        self.log("val/top1", topk_accuracy(final, labels, 1), batch_size=B, prog_bar=True)
        self.log("val/top5", topk_accuracy(final, labels, 5), batch_size=B)
