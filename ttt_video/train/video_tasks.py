"""The video tasks ``video_predict`` and ``video_classify`` for ``ttt-video fit``.

Run-file sections (see ``configs/video/``)::

    model:  {preset: video_ttt_linear_small, <any VideoConfig field>: value, ...,
             objective: {<PredictObjective or ClassifyObjective field>: value, ...}}
    data:   VideoPredictData or VideoClassifyData fields (source, protocol, batches)

``model`` configures the LightningModule: the network (``VideoConfig``, from a preset plus
overrides, see ``ttt_video.train.presets``) and its training objective (loss, rollout
training, readout: ``ttt_video.train.video_objectives``); ``trainer.gradient_checkpointing``
turns checkpointing on in the network.

Sources: ``video_predict`` reads Moving-MNIST-style sequences (``source: moving_mnist``,
``ttt-video prepare mnist``), clips from a folder/manifest of videos (``source:
folder``) or random windows of one video file (``source: file``, what ``demo predict`` fits
on); ``video_classify`` reads the long-range recall task (``source: long_range``) or a
labelled folder-per-class / CSV / JSON manifest (``source: manifest``, UCF101/Breakfast/COIN
style, ``ttt-video prepare index``). Every source yields the same batches,
``{"frames": uint8 [B, F, C, S, S], "label": int64 [B]}`` (``"label"`` for classification).

Folders may hold the videos directly or in sub-folders (prediction); classification reads one
sub-folder per class or a manifest. The class index is the training data's (sorted class
names; the digits for ``long_range``): validation maps its labels into it by name, and the
run keeps it in ``classes.json`` in the run folder and ``class_names`` in every checkpoint
(``ttt_video.train.runner.load_class_names``). An empty folder, videos without a class or a
validation class unknown to training is a ``ConfigError`` naming the field and the folder.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

from ttt_video.data.synthetic.long_range import LongRangeConfig, LongRangeDataModule
from ttt_video.data.synthetic.moving_mnist import VARIANTS, MovingMNISTDataModule, fixed_set_path
from ttt_video.data.video.clips import ClipSpec
from ttt_video.data.video.folder import SourceError, VideoDataModule
from ttt_video.data.video.frames import FrameFormat
from ttt_video.data.video.windows import VideoFileDataModule
from ttt_video.models.video import VideoModel
from ttt_video.models.video_config import VideoConfig
from ttt_video.train.config import ConfigError, RunConfig, from_dict
from ttt_video.train.presets import model_parser, with_trainer_options
from ttt_video.train.tasks import register_task
from ttt_video.train.time_budget import run_time_budget
from ttt_video.train.video_module import VideoClassifyModule, VideoPredictModule
from ttt_video.train.video_objectives import ClassifyObjective, PredictObjective
from ttt_video.validation import check_positive

PREDICT_SOURCES = ("moving_mnist", "folder", "file")
CLASSIFY_SOURCES = ("long_range", "manifest")


@dataclass
class VideoModelSection(VideoConfig):
    """A video task's ``model`` section: the ``VideoConfig`` fields plus the task's objective."""

    def network(self) -> VideoConfig:
        """The ``VideoConfig`` fields alone: what ``VideoModel`` is built from (and saves)."""
        return VideoConfig(**{f.name: getattr(self, f.name) for f in fields(VideoConfig) if f.init})


@dataclass
class PredictModelSection(VideoModelSection):
    """``model`` of ``video_predict``."""

    objective: PredictObjective = field(default_factory=PredictObjective)
    """Loss and rollout training (``ttt_video.train.video_objectives.PredictObjective``)."""


@dataclass
class ClassifyModelSection(VideoModelSection):
    """``model`` of ``video_classify``."""

    objective: ClassifyObjective = field(default_factory=ClassifyObjective)
    """Readout and window (``ttt_video.train.video_objectives.ClassifyObjective``)."""


@dataclass
class VideoPredictData:
    """Clips for next-frame prediction and the evaluation protocol (``num_input`` -> ``num_output``)."""

    source: str = "moving_mnist"
    """``"moving_mnist"`` (generated from real digits), ``"folder"`` (videos on disk) or
    ``"file"`` (random windows of one video)."""
    variant: str = "standard"
    """Moving-MNIST protocol: ``standard`` (10 -> 10), ``context40`` (40 -> 10),
    ``context90`` (90 -> 10), ``long200`` (100 -> 100), ``long1000`` (500 -> 500)."""
    path: str | None = None
    """``folder``: a folder of videos (directly in it or in sub-folders) or a CSV/JSON manifest
    for training; ``file``: the video."""
    val_path: str | None = None
    """``folder``: the same for validation (None: no validation)."""
    num_input: int = 10
    """Context frames before the rollout (must match the Moving-MNIST variant)."""
    num_output: int = 10
    """Frames rolled out at evaluation (and trained on with ``model.objective.rollout_training``)."""
    size: int = 64
    """``folder``, ``file``: frames are resized (centre crop) to ``size x size``."""
    channels: int = 1
    """``folder``, ``file``: 1 (grayscale) or 3 (RGB)."""
    fps: float | None = None
    """``folder``, ``file``: resample to this rate (None: every frame at the native rate)."""
    max_frames: int | None = None
    """``file``: train on the first this many frames only (None: all)."""
    batch_size: int = 16
    """Clips per batch."""
    train_length: int = 10_000
    """``moving_mnist``: sequences per training epoch (generated on the fly); ``file``: windows."""
    num_workers: int = 0
    """DataLoader worker processes."""
    time_budget_s: float | None = None
    """Stop training after this many seconds (the LR schedule follows elapsed time)."""

    def __post_init__(self) -> None:
        check_positive(self, "num_input", "num_output", "size", "batch_size", "train_length")
        check_positive(self, "max_frames", "time_budget_s", allow_none=True)
        check_channels(self.channels)
        if self.source not in PREDICT_SOURCES:
            raise ValueError(
                f"source: expected one of {', '.join(PREDICT_SOURCES)}, got {self.source!r}"
            )
        if self.source == "moving_mnist":
            if self.variant not in VARIANTS:
                raise ValueError(f"variant: unknown {self.variant!r}; valid: {', '.join(VARIANTS)}")
            v = VARIANTS[self.variant]
            if (self.num_input, self.num_output) != (v.num_input, v.num_output):
                raise ValueError(
                    f"num_input: {self.num_input} -> {self.num_output} does not match the "
                    f"{self.variant} protocol ({v.num_input} -> {v.num_output})"
                )
        elif self.path is None:
            raise ValueError(f"path: source {self.source!r} needs a video file or folder")

    @property
    def frame_size(self) -> tuple[int, int]:
        """(side, channels) of the frames this data yields."""
        return (64, 1) if self.source == "moving_mnist" else (self.size, self.channels)


@dataclass
class VideoClassifyData:
    """Labelled clips: the long-range recall task or a labelled manifest."""

    source: str = "long_range"
    """``"long_range"`` (cue digit then ``distance`` distractor frames) or ``"manifest"``."""
    distance: int = 50
    """``long_range``: distractor frames between the cue and the end of the clip."""
    cue_frames: int = 4
    """``long_range``: frames showing the label digit."""
    size: int = 32
    """Frame side (``long_range``: at least 28)."""
    channels: int = 1
    """``manifest``: 1 (grayscale) or 3 (RGB); ``long_range`` is grayscale."""
    train: str | None = None
    """``manifest``: class folders or a CSV/JSON manifest for training."""
    val: str | None = None
    """``manifest``: the same for validation (None: no validation)."""
    num_frames: int = 16
    """``manifest``: frames per clip."""
    fps: float | None = None
    """``manifest``: resample to this rate (None: native rate)."""
    batch_size: int = 8
    """Clips per batch."""
    train_length: int = 2000
    """``long_range``: training sequences per epoch."""
    eval_length: int = 200
    """``long_range``: validation sequences."""
    num_workers: int = 0
    """DataLoader worker processes."""
    time_budget_s: float | None = None
    """Stop training after this many seconds (the LR schedule follows elapsed time)."""

    def __post_init__(self) -> None:
        check_positive(self, "size", "num_frames", "batch_size", "train_length", "eval_length")
        check_positive(self, "time_budget_s", allow_none=True)
        check_channels(self.channels)
        if self.source not in CLASSIFY_SOURCES:
            raise ValueError(
                f"source: expected one of {', '.join(CLASSIFY_SOURCES)}, got {self.source!r}"
            )
        if self.source == "manifest" and self.train is None:
            raise ValueError("train: source 'manifest' needs class folders or a manifest file")
        if self.source == "long_range" and self.size < 28:
            raise ValueError(f"size: long_range needs size >= 28, got {self.size}")
        if self.source == "long_range" and self.channels != 1:
            raise ValueError(f"channels: long_range is grayscale (1), got {self.channels}")


def check_channels(channels: int) -> None:
    """``ValueError`` naming ``channels`` unless it is 1 (grayscale) or 3 (RGB)."""
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 (grayscale) or 3 (RGB), got {channels}")


def data_parser(cls: type, objective: type):
    """The ``data`` parser of a video task: ``cls`` from the mapping, with a pointer to
    ``model.objective`` for the ``objective`` fields that older run files put in ``data``."""
    moved = [f.name for f in fields(objective)]

    def parse(data: object, where: str):
        for key in moved if isinstance(data, dict) else ():
            if key in data:
                raise ConfigError(
                    f"{where}.{key}: the training objective moved to the model section; "
                    f"write it as model.objective.{key}"
                )
        return from_dict(cls, data, where)

    return parse


def _check_frames(model: VideoConfig, size: int, channels: int) -> None:
    if (model.image_size, model.channels) != (size, channels):
        raise ConfigError(
            f"model.image_size: the model takes {model.channels}x{model.image_size}^2 frames, "
            f"the data gives {channels}x{size}^2 (set model.image_size/model.channels)"
        )


def _network(run: RunConfig) -> VideoConfig:
    """The run's ``VideoConfig`` with the trainer's model options applied."""
    return with_trainer_options(run.model.network(), run.trainer)


def _total_steps(run: RunConfig) -> int:
    return run.optim.schedule_steps or run.trainer.max_steps


def _existing(path: str, field: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{field}: {p} not found")
    return p


def folder_datamodule(sources: dict[str, str | None], **options) -> VideoDataModule:
    """The ``VideoDataModule`` of ``{field: path}`` (train first, then val; None: no such
    split); ``FileNotFoundError``/``ConfigError`` naming the field of a missing path, an empty
    folder, videos without a class or a class unknown to training."""
    paths = {f: None if p is None else _existing(p, f) for f, p in sources.items()}
    try:
        return VideoDataModule(*paths.values(), **options)
    except SourceError as err:
        field = next(f for f, p in paths.items() if p == err.source)
        raise ConfigError(f"{field}: {err}") from err


def predict_datamodule(data: VideoPredictData, seed: int):
    """The DataModule of a ``VideoPredictData`` (``FileNotFoundError`` naming what to run)."""
    if data.source == "moving_mnist":
        for split in ("val", "test"):
            if not fixed_set_path(data.variant, split).exists():
                raise FileNotFoundError(
                    f"data.variant: {fixed_set_path(data.variant, split)} is missing; "
                    f"run: ttt-video prepare mnist --variants {data.variant}"
                )
        return MovingMNISTDataModule(
            data.variant, data.batch_size, data.num_workers, data.train_length, seed
        )
    fmt = FrameFormat(size=data.size, channels=data.channels)
    num_frames = data.num_input + data.num_output
    if data.source == "file":
        return VideoFileDataModule(
            _existing(data.path, "data.path"),
            fmt,
            num_frames,
            length=data.train_length,
            batch_size=data.batch_size,
            num_workers=data.num_workers,
            seed=seed,
            fps=data.fps,
            max_frames=data.max_frames,
        )
    return folder_datamodule(
        {"data.path": data.path, "data.val_path": data.val_path},
        spec=ClipSpec(fps=data.fps, num_frames=num_frames),
        fmt=fmt,
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        seed=seed,
        labelled=False,
    )


@register_task(
    "video_predict",
    model=model_parser(PredictModelSection, preset_type=VideoConfig),
    data=data_parser(VideoPredictData, PredictObjective),
    build_model=lambda run: VideoModel(_network(run)),
)
def build_video_predict(run: RunConfig) -> tuple[VideoPredictModule, object]:
    """The prediction module and its data for a resolved run."""
    model, data = _network(run), run.data
    _check_frames(model, *data.frame_size)
    if model.decoder == "none":
        raise ConfigError("model.decoder: video_predict needs a pixel decoder, got 'none'")
    datamodule = predict_datamodule(data, run.trainer.seed)
    module = VideoPredictModule(
        model,
        run.optim,
        _total_steps(run),
        data.num_input,
        data.num_output,
        run.model.objective,
        run_time_budget(run),
    )
    return module, datamodule


def classify_datamodule(data: VideoClassifyData, seed: int):
    """The DataModule of a ``VideoClassifyData``; its ``classes`` are the class names."""
    if data.source == "long_range":
        cfg = LongRangeConfig(data.distance, data.cue_frames, data.size)
        return LongRangeDataModule(
            cfg, data.batch_size, data.num_workers, data.train_length, data.eval_length, seed
        )
    return folder_datamodule(
        {"data.train": data.train, "data.val": data.val},
        spec=ClipSpec(fps=data.fps, num_frames=data.num_frames),
        fmt=FrameFormat(size=data.size, channels=data.channels),
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        seed=seed,
    )


@register_task(
    "video_classify",
    model=model_parser(ClassifyModelSection, preset_type=VideoConfig),
    data=data_parser(VideoClassifyData, ClassifyObjective),
    build_model=lambda run: VideoModel(_network(run)),
)
def build_video_classify(run: RunConfig) -> tuple[VideoClassifyModule, object]:
    """The classification module and its data for a resolved run."""
    model, data = _network(run), run.data
    _check_frames(model, data.size, data.channels)
    datamodule = classify_datamodule(data, run.trainer.seed)
    classes = datamodule.classes
    if model.num_classes < max(len(classes), 1):
        raise ConfigError(
            f"model.num_classes: {model.num_classes} is fewer than the data's "
            f"{len(classes)} classes"
        )
    if classes and model.num_classes > len(classes):
        warnings.warn(
            f"model.num_classes: {model.num_classes} outputs for the data's {len(classes)} "
            "classes; the extra outputs are never a target (top-5 accuracy is 1.0 with 5 "
            f"classes or fewer): set model.num_classes: {len(classes)}",
            stacklevel=2,
        )
    module = VideoClassifyModule(
        model, run.optim, _total_steps(run), run.model.objective, run_time_budget(run), classes
    )
    return module, datamodule
