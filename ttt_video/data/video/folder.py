"""Video clip datasets over folders and manifests, with skip-and-log for bad files, and a DataModule.

Letters: B batch, F frames per clip, C channels, H height, W width.

An item is ``{"frames": uint8 [F, C, H, W], "label": int}`` (``"label"`` only when the dataset
is ``labelled``: the items of every video dataset look alike). A file that cannot be read
(missing, corrupt, too short, truncated when truncation is not allowed) is logged and yields
``None`` when ``skip_bad``; ``collate_clips`` drops those and counts them in the batch's
``"skipped"``, so one bad file never ends an epoch. Training clips start at random offsets
(seeded by ``(seed, epoch, index)``); evaluation clips are the first ``F`` of each video.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from torch.utils.data import Dataset, default_collate

from ttt_video.data.epochs import EpochDataModule, item_rng
from ttt_video.data.video.errors import VideoReadError
from ttt_video.data.video.frames import FrameFormat
from ttt_video.data.video.manifest import VideoItem, load_items
from ttt_video.data.video.reader import Backend, ClipSpec, VideoReader

log = logging.getLogger(__name__)


class VideoClipDataset(Dataset):
    """One clip per video per epoch from ``items``; see the module docstring for items and skips.

    Args:
        items: the videos (``load_items`` makes them from a folder or manifest).
        spec: clip sampling; each item's start/end (when set) replace the spec's.
        fmt: frame size and channels.
        backend: ``"auto"``, ``"av"`` or ``"decord"``.
        skip_bad: log and skip unreadable files instead of raising.
        allow_truncated: return the decodable frames of truncated files (with a warning).
        seed: seeds the random clip offsets.
        labelled: items carry the video's ``"label"`` (classification).
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
        item = self.items[index % len(self.items)]
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


def collate_clips(batch: list[dict | None]) -> dict:
    """The default collation of the readable items (frames uint8 ``[B', F, C, H, W]``, label
    int64 ``[B']`` when labelled) plus ``"skipped"``, the count of unreadable ones (frames
    None when all were)."""
    good = [b for b in batch if b is not None]
    if not good:
        return {"frames": None, "skipped": len(batch)}
    return {**default_collate(good), "skipped": len(batch) - len(good)}


class VideoDataModule(EpochDataModule):
    """Train / val / test clip loaders from class folders or manifests (``val``/``test`` optional).

    ``spec.num_frames`` should be set so clips stack into batches; ``labelled=False`` (frame
    prediction) leaves ``"label"`` out of the items.
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
        self.sources = {"train": train, "val": val, "test": test}
        self.spec = spec or ClipSpec(num_frames=16)
        self.fmt, self.backend, self.labelled = fmt or FrameFormat(size=112), backend, labelled
        self.classes: list[str] = []
        self.collate_fn = collate_clips

    def _dataset(self, split: str) -> VideoClipDataset | None:
        source = self.sources[split]
        if source is None:
            return None
        items, classes = load_items(source)
        if split == "train":
            self.classes = classes
        spec = replace(self.spec, random=split == "train")
        return VideoClipDataset(
            items, spec, self.fmt, self.backend, seed=self.seed, labelled=self.labelled
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets (a missing val/test source gives no loader)."""
        self.train = self._dataset("train")
        self.val = self._dataset("val")
        self.test = self._dataset("test")

    def val_dataloader(self):
        return self.eval_loader(self.val) if self.val is not None else []

    def test_dataloader(self):
        return self.eval_loader(self.test) if self.test is not None else []
