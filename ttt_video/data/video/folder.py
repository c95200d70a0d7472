"""Video clip datasets over folders and manifests, with skip-and-log for bad files, and a DataModule.

Letters: B batch, F frames per clip, C channels, H height, W width.

An item is ``{"frames": uint8 [F, C, H, W], "label": int}`` (``"label"`` only when the dataset
is ``labelled``: the items of every video dataset look alike). Training clips start at random
offsets (seeded by ``(seed, epoch, index)``); evaluation clips are the first ``F`` of each video.

Sources (``split_items``): a folder of videos, flat or nested (prediction); a folder with one
sub-folder per class (classification); or a CSV/JSON manifest. One class index, the training
split's, labels every split: validation and test labels are mapped by class name into it, and
a class training does not have is an error that names it.

Unreadable files (missing, corrupt, too short, truncated when truncation is not allowed) are
logged with their path and reason when first met and never end an epoch:

- ``VideoClipDataset`` gives ``None`` for them, and ``collate_clips`` drops those and counts
  them in the batch's ``"skipped"`` (evaluation: metrics over the readable clips).
- ``ReadableClips`` (training) fills the slot of an unreadable video with a clip of the next
  readable video of the list, so every training batch is full (every batch is one step on
  every process, which exact resume and DDP rely on); ``collate_training_clips`` counts the
  slots filled so in ``"skipped"``. The training module reports the count per epoch.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from torch.utils.data import DataLoader, Dataset, default_collate

from ttt_video.data.epochs import EpochDataModule, item_rng
from ttt_video.data.video.errors import UnreadableDataError, VideoReadError
from ttt_video.data.video.frames import FrameFormat
from ttt_video.data.video.manifest import (
    VIDEO_EXTENSIONS,
    VideoItem,
    find_videos,
    read_manifest,
    scan_class_folders,
)
from ttt_video.data.video.reader import Backend, ClipSpec, VideoReader

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """A folder or manifest that cannot make a split; ``source`` is its path."""

    def __init__(self, source: str | Path, reason: str):
        self.source = Path(source)
        super().__init__(f"{self.source}: {reason}")


def _folder_items(root: Path, labelled: bool) -> tuple[list[VideoItem], list[str]]:
    """Every video under ``root`` (unlabelled), or its class sub-folders' videos (labelled)."""
    if not labelled:
        return [VideoItem(str(p)) for p in find_videos(root)], []
    loose = [p.name for p in find_videos(root) if p.parent == root]
    if loose:
        raise SourceError(
            root,
            f"{len(loose)} videos directly in the folder ({', '.join(loose[:3])}) have no "
            "class; classification reads one sub-folder per class (root/<class>/video)",
        )
    return scan_class_folders(root)


def _names_of_integer_labels(items: list[VideoItem], source: Path) -> list[str]:
    """Class names ``"0" .. "K-1"`` of a manifest labelled by class index."""
    unlabelled = [i.path for i in items if i.label < 0]
    if unlabelled:
        raise SourceError(source, f"{len(unlabelled)} rows have no label (first: {unlabelled[0]})")
    return [str(k) for k in range(max(i.label for i in items) + 1)]


def split_items(
    source: str | Path, labelled: bool = True, classes: list[str] | None = None
) -> tuple[list[VideoItem], list[str]]:
    """The videos of one split and the class names their labels index.

    Args:
        source: a folder of videos (``labelled=False``: flat or nested, every video under it;
            ``labelled=True``: one sub-folder per class) or a ``.csv``/``.json`` manifest
            (labels as class names or class indices).
        labelled: read labels (classification); False leaves every label at -1.
        classes: the training split's class names: labels are mapped by name into them. None:
            this split's own names, sorted (the training split, whose index the others use).

    Returns:
        (items, class names): ``items[j].label`` indexes the names (``classes`` when given).

    Raises:
        SourceError: ``source`` holds no video, videos without a class, or classes that
            ``classes`` does not have (named).
    """
    source = Path(source)
    if source.is_dir():
        items, names = _folder_items(source, labelled)
    else:
        try:
            items, names = read_manifest(source)
        except ValueError as err:  # a video file, a binary file, rows without a path
            raise SourceError(source, str(err).removeprefix(f"{source}: ")) from err
    if not items:
        where = ", in one sub-folder per class" if labelled and source.is_dir() else ""
        raise SourceError(
            source, f"no videos found (looked for {', '.join(VIDEO_EXTENSIONS)}{where})"
        )
    if not labelled:
        return [replace(i, label=-1) for i in items], []
    names = names or _names_of_integer_labels(items, source)
    if classes is None:
        return items, names
    index = {name: k for k, name in enumerate(classes)}
    unknown = sorted({names[i.label] for i in items} - index.keys())
    if unknown:
        shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
        raise SourceError(
            source,
            f"classes {unknown} are not among the {len(classes)} classes of the training "
            f"data ({shown})",
        )
    return [replace(i, label=index[names[i.label]]) for i in items], list(classes)


class VideoClipDataset(Dataset):
    """One clip per video per epoch from ``items``; see the module docstring for items and skips.

    Args:
        items: the videos (``split_items`` makes them from a folder or manifest).
        spec: clip sampling; each item's start/end (when set) replace the spec's.
        fmt: frame size and channels.
        backend: ``"auto"``, ``"av"`` or ``"decord"``.
        skip_bad: log and skip unreadable files (``None`` items) instead of raising.
        allow_truncated: return the decodable frames of truncated files (with a warning).
        seed: seeds the random clip offsets.
        labelled: items carry the video's ``"label"`` (classification).

    ``skipped`` maps the unreadable files this process met to the reason; they are not opened
    again.
    """

    def __init__(
        self,
        items: list[VideoItem],
        spec: ClipSpec,
        fmt: FrameFormat | None = None,
        backend: Backend = "auto",
        skip_bad: bool = True,
        allow_truncated: bool = False,
        seed: int = 0,
        labelled: bool = True,
    ):
        self.items, self.spec, self.fmt = items, spec, fmt or FrameFormat()
        self.backend, self.skip_bad, self.allow_truncated, self.seed = (
            backend,
            skip_bad,
            allow_truncated,
            seed,
        )
        self.labelled = labelled
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict | None:
        return self.read(index)

    def read(self, index: int, video: int | None = None) -> dict | None:
        """Item ``index``'s clip (its random offset drawn from ``(seed, epoch, i)``) of video
        ``video`` (default: the item's own, ``index % len``); None when that file is
        unreadable and ``skip_bad`` (``VideoReadError`` otherwise)."""
        item = self.items[index % len(self.items) if video is None else video]
        if item.path in self.skipped:
            return None
        spec = self.spec
        if item.start is not None or item.end is not None:
            spec = replace(spec, start=item.start, end=item.end, start_frame=None, end_frame=None)
        try:
            reader = VideoReader(item.path, self.backend)
            rng = item_rng(self.seed, index, len(self.items))
            clip = reader.read(spec, self.fmt, rng=rng, allow_truncated=self.allow_truncated)
        except VideoReadError as err:
            if not self.skip_bad:
                raise
            self.skipped[item.path] = err.reason
            log.warning("skipping %s: %s", item.path, err.reason)
            return None
        return (
            {"frames": clip.frames, "label": item.label}
            if self.labelled
            else {"frames": clip.frames}
        )


class ReadableClips(Dataset):
    """Training view of a ``VideoClipDataset``: item ``index`` -> ``(item, unreadable)``.

    ``unreadable`` is 1 when the slot's own video could not be read; its item is then a clip of
    the next readable video of the list (at the slot's own random offset), so batches stay full.
    ``UnreadableDataError`` when no video of the list can be read.
    """

    def __init__(self, clips: VideoClipDataset):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[dict, int]:
        n = len(self.clips)
        for k in range(n):
            item = self.clips.read(index, (index + k) % n)
            if item is not None:
                return item, int(k > 0)
        raise UnreadableDataError(
            f"none of the {n} training videos can be read (first: {self.clips.items[0].path}: "
            f"{self.clips.skipped.get(self.clips.items[0].path)}); see the warnings above"
        )


def collate_clips(batch: list[dict | None]) -> dict:
    """The default collation of the readable items (frames uint8 ``[B', F, C, H, W]``, label
    int64 ``[B']`` when labelled) plus ``"skipped"``, the count of unreadable ones (frames
    None when all were)."""
    good = [b for b in batch if b is not None]
    if not good:
        return {"frames": None, "skipped": len(batch)}
    return {**default_collate(good), "skipped": len(batch) - len(good)}


def collate_training_clips(batch: list[tuple[dict, int]]) -> dict:
    """``ReadableClips`` items -> the default collation (frames uint8 ``[B, F, C, H, W]``,
    label int64 ``[B]``) plus ``"skipped"``, the count of slots whose video was unreadable."""
    return {**default_collate([item for item, _ in batch]), "skipped": sum(s for _, s in batch)}


class VideoDataModule(EpochDataModule):
    """Train / val / test clip loaders from folders or manifests (``val``/``test`` optional).

    The videos are listed when the module is made (``split_items``: an empty folder or a class
    unknown to training is a ``SourceError`` here, before any training, and so is a split none
    of whose videos gives a clip: unreadable, or all too short); ``classes`` is the training split's
    class index, which labels every split (empty when not ``labelled``). ``spec.num_frames``
    should be set so clips stack into batches; ``labelled=False`` (frame prediction) leaves
    ``"label"`` out of the items.
    """

    def __init__(
        self,
        train: str | Path,
        val: str | Path | None = None,
        test: str | Path | None = None,
        spec: ClipSpec | None = None,
        fmt: FrameFormat | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        backend: Backend = "auto",
        labelled: bool = True,
    ):
        super().__init__(batch_size, num_workers, seed)
        self.spec = spec or ClipSpec(num_frames=16)
        self.fmt, self.backend, self.labelled = fmt or FrameFormat(size=112), backend, labelled
        self.collate_fn = collate_clips
        self.items: dict[str, list[VideoItem]] = {}
        self.unreadable: dict[str, dict[str, str]] = {}  # split -> {path: reason} met so far
        self.items["train"], self.classes = split_items(train, labelled)
        for split, source in (("val", val), ("test", test)):
            if source is not None:
                self.items[split] = split_items(source, labelled, self.classes)[0]
        for split, source in zip(("train", "val", "test"), (train, val, test)):
            if split in self.items:
                self._check_readable(split, source)

    def _check_readable(self, split: str, source: str | Path) -> None:
        """``SourceError`` unless some video of ``split`` gives a clip: reads them in order up
        to the first that does (one read for a good folder), so that a split of unreadable or
        too short videos stops the run here, not after its first training steps."""
        clips = self._dataset(split)
        self.unreadable[split] = clips.skipped  # the loaders neither reopen nor log them again
        for i in range(len(clips)):
            if clips.read(i, i) is not None:
                return
        first = clips.items[0].path
        raise SourceError(
            source,
            f"none of its {len(clips)} videos gives a clip of {self.spec.num_frames} frames "
            f"(first: {first}: {clips.skipped[first]})",
        )

    def _dataset(self, split: str) -> VideoClipDataset | None:
        if split not in self.items:
            return None
        spec = replace(self.spec, random=split == "train")
        clips = VideoClipDataset(
            self.items[split], spec, self.fmt, self.backend, seed=self.seed, labelled=self.labelled
        )
        clips.skipped.update(self.unreadable.get(split, {}))
        return clips

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets (a missing val/test source gives no loader)."""
        self.train = self._dataset("train")
        self.val = self._dataset("val")
        self.test = self._dataset("test")

    def train_dataloader(self) -> DataLoader:
        """Full batches of training clips (``ReadableClips``), resumed where the trainer is."""
        readable = ReadableClips(self.train)
        return self._loader(readable, self.train_sampler(readable), collate_training_clips)

    def val_dataloader(self):
        return self.eval_loader(self.val) if self.val is not None else []

    def test_dataloader(self):
        return self.eval_loader(self.test) if self.test is not None else []
