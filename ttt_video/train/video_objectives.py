"""Training objectives of the video tasks: what the LightningModule optimises.

They sit in a run file's ``model`` section, under ``objective`` (next to the ``VideoConfig``
fields), because they configure the module, not the data::

    model:
      preset: video_ttt_linear_small
      objective: {loss: mse, rollout_training: true, feedback_grad: true, context_weight: 3.0}

Each dataclass validates its fields once, when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from ttt_video.validation import check_positive

LOSSES = ("mse", "l1")
READOUTS = ("last", "mean")


@dataclass
class PredictObjective:
    """Next-frame prediction: per-pixel loss, optionally on fed-back predictions."""

    loss: str = "mse"
    """Per-pixel loss: ``"mse"`` or ``"l1"``."""
    rollout_training: bool = False
    """Train the last ``data.num_output`` frames on the model's own fed-back predictions."""
    feedback_grad: bool = False
    """With ``rollout_training``: back-propagate through the fed-back frames too."""
    context_weight: float = 1.0
    """With ``rollout_training``: loss weight of a teacher-forced frame relative to a rolled-out
    one (1: the plain mean over all frames)."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, got {self.loss!r}")
        check_positive(self, "context_weight")


@dataclass
class ClassifyObjective:
    """Per-frame classification: where the cross-entropy reads the logits."""

    readout: str = "last"
    """Loss on the last frame's logits (``"last"``) or on every frame's (``"mean"``)."""
    window_frames: int | None = None
    """Show the model only the last this many frames (a local-window baseline; None: all)."""

    def __post_init__(self) -> None:
        if self.readout not in READOUTS:
            raise ValueError(
                f"readout: expected one of {', '.join(READOUTS)}, got {self.readout!r}"
            )
        check_positive(self, "window_frames", integer=True, allow_none=True)
