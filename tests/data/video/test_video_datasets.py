"""Manifest and class-folder datasets, skip-and-log of bad files, the DataModule, index_videos,
flat folders, one class index for every split, full training batches around unreadable files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import decode_index, make_video

from ttt_video.data.video.errors import UnreadableDataError
from ttt_video.data.video.folder import (
    ReadableClips,
    SourceError,
    VideoClipDataset,
    VideoDataModule,
    collate_clips,
    split_items,
)
from ttt_video.data.video.frames import FrameFormat
from ttt_video.data.video.manifest import load_items, read_manifest
from ttt_video.data.video.reader import ClipSpec


@pytest.fixture(scope="module")
def class_root(tmp_path_factory, videos) -> Path:
    """Two classes of three videos, plus one broken file in class b."""
    root = tmp_path_factory.mktemp("classes")
    for c, name in enumerate(("a", "b")):
        (root / name).mkdir()
        for k in range(3):
            make_video(root / name / f"v{k}.mp4", 20 + 10 * c + k, (32, 32), fps=10)
    shutil.copy(videos["text"], root / "b" / "broken.mp4")
    return root


def test_class_folders_skip_bad_files_and_count_them(class_root, caplog):
    items, classes = load_items(class_root)
    assert classes == ["a", "b"] and len(items) == 7
    assert [i.label for i in items] == [0, 0, 0, 1, 1, 1, 1]
    ds = VideoClipDataset(
        items, ClipSpec(num_frames=8, stride=2, random=True), FrameFormat(size=16)
    )
    batch = collate_clips([ds[i] for i in range(len(ds))])
    assert batch["frames"].shape == (6, 8, 3, 16, 16) and batch["skipped"] == 1
    assert list(ds.skipped.values()) == [
        "not a readable video container (Invalid data found when processing input)"
    ]
    assert "broken.mp4" in caplog.text
    strict = VideoClipDataset(items, ClipSpec(num_frames=8), skip_bad=False)
    with pytest.raises(ValueError, match="broken.mp4"):
        strict[[i.path for i in items].index(str(class_root / "b" / "broken.mp4"))]


def test_random_clips_depend_on_epoch(class_root):
    items, _ = load_items(class_root)
    ds = VideoClipDataset(items[:1], ClipSpec(num_frames=4, random=True), FrameFormat(channels=1))
    firsts = {decode_index(ds[epoch]["frames"][0].numpy()) for epoch in range(6)}
    assert torch.equal(ds[0]["frames"], ds[0]["frames"]) and len(firsts) > 1


def test_csv_and_json_manifests_with_bounds(class_root, tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(
        f"path,label,start,end\n{class_root}/a/v0.mp4,cat,0.5,1.5\n{class_root}/b/v1.mp4,dog,,\n"
    )
    items, names = read_manifest(csv_path)
    assert names == ["cat", "dog"] and [i.label for i in items] == [0, 1]
    assert (items[0].start, items[0].end, items[1].start) == (0.5, 1.5, None)
    ds = VideoClipDataset(items, ClipSpec(), FrameFormat(channels=1))
    frames = ds[0]["frames"]
    assert [decode_index(f.numpy()) for f in frames] == list(range(5, 15))
    json_path = tmp_path / "m.json"
    json_path.write_text(json.dumps([{"path": "a/v2.mp4", "label": 3}]))
    shutil.copytree(class_root / "a", tmp_path / "a")
    items, names = read_manifest(json_path)
    assert names == [] and items[0].label == 3 and Path(items[0].path).exists()


def test_datamodule_batches(class_root):
    dm = VideoDataModule(
        class_root,
        val=class_root,
        spec=ClipSpec(num_frames=6),
        fmt=FrameFormat(size=16),
        batch_size=4,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    batches = list(loader)
    assert sum(b["skipped"] for b in batches) == 1 and dm.classes == ["a", "b"]
    assert batches[0]["frames"].shape[1:] == (6, 3, 16, 16)
    val = next(iter(dm.val_dataloader()))
    assert [decode_index(f[0].numpy()) for f in val["frames"]] == [0] * len(val["frames"])
    assert dm.test_dataloader() == []


def test_index_videos_script(class_root, tmp_path, capsys, caplog):
    from ttt_video.apps.prepare import index as module

    out = tmp_path / "index.json"
    assert module.main([str(class_root), "--out", str(out), "--class_folders"]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 7 and "6 decodable, 1 not" in capsys.readouterr().out
    bad = [r for r in rows if not r["decodable"]]
    assert bad[0]["path"] == "b/broken.mp4" and "not a readable" in bad[0]["error"]
    good = next(r for r in rows if r["path"] == "a/v1.mp4")
    assert (good["num_frames"], good["fps"], good["width"], good["label"]) == (21, 10.0, 32, "a")
    items, names = read_manifest(out)  # the row the index marked undecodable is left out
    assert names == ["a", "b"] and len(items) == 6
    assert not any(i.path.endswith("broken.mp4") for i in items)
    assert "leaving out 1 rows marked decodable=False (first: b/broken.mp4" in caplog.text


def fill(folder: Path, names: dict[str, Path]) -> Path:
    """``folder/<relative path>`` copies of the given files (folders made as needed)."""
    for relative, source in names.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / relative)
    return folder


def test_val_labels_follow_the_training_class_index(class_root, tmp_path):
    clip = class_root / "a" / "v0.mp4"
    train = fill(tmp_path / "train", {f"{c}/v.mp4": clip for c in ("cat", "dog", "fish")})
    val = fill(tmp_path / "val", {"dog/v.mp4": clip, "fish/v.mp4": clip})  # no cat
    dm = VideoDataModule(train, val=val, spec=ClipSpec(num_frames=4), fmt=FrameFormat(size=16))
    dm.setup("fit")
    assert dm.classes == ["cat", "dog", "fish"]
    val_labels = {Path(i.path).parent.name: i.label for i in dm.val.items}
    assert val_labels == {"dog": 1, "fish": 2}
    assert next(iter(dm.val_dataloader()))["label"].tolist() == [1, 2]
    manifest = tmp_path / "val.csv"  # class names in a manifest map the same way
    manifest.write_text(f"path,label\n{clip},fish\n{clip},dog\n")
    items, names = split_items(manifest, classes=dm.classes)
    assert [i.label for i in items] == [2, 1] and names == dm.classes
    fill(val, {"bird/v.mp4": clip})
    with pytest.raises(SourceError, match=r"classes \['bird'\] are not among the 3 classes"):
        VideoDataModule(train, val=val)


def test_flat_nested_and_empty_folders(class_root, tmp_path):
    clips = sorted(class_root.glob("*/v*.mp4"))
    flat = fill(tmp_path / "flat", {f"clip{k}.mp4": c for k, c in enumerate(clips)})
    for root, count in ((flat, 6), (class_root, 7)):  # prediction: every video under the folder
        dm = VideoDataModule(
            root, spec=ClipSpec(num_frames=4), fmt=FrameFormat(size=16), labelled=False
        )
        assert len(dm.items["train"]) == count
    with pytest.raises(SourceError, match=r"flat: 6 videos directly in the folder .* no class"):
        VideoDataModule(flat)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    for labelled in (False, True):
        with pytest.raises(SourceError, match=r"empty: no videos found"):
            VideoDataModule(tmp_path / "empty", labelled=labelled)


def test_training_batches_stay_full_around_unreadable_files(class_root, videos, tmp_path, caplog):
    good = sorted(class_root.glob("a/v*.mp4"))
    bad = {f"bad{k}.mp4": videos[name] for k, name in enumerate(("text", "empty", "truncated"))}
    root = fill(tmp_path / "mixed", {**{f"good{k}.mp4": c for k, c in enumerate(good)}, **bad})
    items, _ = split_items(root, labelled=False)
    spec, fmt = ClipSpec(num_frames=4, random=True), FrameFormat(size=16)
    clips = VideoClipDataset(items, spec, fmt, labelled=False)
    batch = collate_clips([clips[i] for i in range(3)])  # bad0, bad1, bad2: all unreadable
    assert batch == {"frames": None, "skipped": 3}
    assert all(f"bad{k}.mp4" in caplog.text for k in range(3))
    readable = ReadableClips(clips)
    for index in range(len(items), 2 * len(items)):  # epoch 1
        item, unreadable = readable[index]
        assert item["frames"].shape == (4, 3, 16, 16)
        assert unreadable == (Path(items[index % len(items)].path).stem.startswith("bad"))
    for workers in (0, 2):  # the count per epoch does not depend on the loader workers
        dm = VideoDataModule(
            root, spec=spec, fmt=fmt, batch_size=1, num_workers=workers, labelled=False
        )
        dm.setup("fit")
        batches = list(dm.train_dataloader())
        assert [b["frames"].shape[0] for b in batches] == [1] * 6
        assert sum(b["skipped"] for b in batches) == 3
    hopeless = ReadableClips(VideoClipDataset(items[:3], ClipSpec(num_frames=4)))
    with pytest.raises(UnreadableDataError, match="none of the 3 training videos can be read"):
        hopeless[0]


def test_a_split_without_a_readable_clip_is_an_error_when_the_module_is_made(
    class_root, videos, tmp_path
):
    """Unreadable or too short videos in a whole split stop the run before training, with the
    split's source, the clip length and the first video's reason (not a failed metric later)."""
    good = fill(tmp_path / "good", {"v.mp4": class_root / "a" / "v0.mp4"})  # 20 frames
    short = fill(tmp_path / "short", {"s.mp4": videos["one"]})  # 1 frame
    bad = fill(tmp_path / "bad", {"x.mp4": videos["text"], "y.mp4": videos["empty"]})
    options = {"spec": ClipSpec(num_frames=4), "fmt": FrameFormat(size=16), "labelled": False}
    for split, source, reason in (("val", short, "s.mp4: "), ("test", bad, "x.mp4: not a")):
        with pytest.raises(SourceError, match=rf"gives a clip of 4 frames \(first: .*{reason}"):
            VideoDataModule(good, **{split: source}, **options)
    with pytest.raises(SourceError, match="bad: none of its 2 videos gives a clip"):
        VideoDataModule(bad, val=good, **options)
    assert VideoDataModule(good, val=good, **options).items["val"]  # one readable video is enough


def test_a_video_or_binary_file_is_not_a_manifest(videos, tmp_path):
    with pytest.raises(SourceError, match=r"h264.mp4: expected a folder .*\(a video file"):
        split_items(videos["h264"], labelled=False)
    binary = tmp_path / "rows.csv"
    binary.write_bytes(bytes(range(128, 256)) * 8)
    with pytest.raises(SourceError, match="rows.csv: not a text manifest"):
        split_items(binary, labelled=False)


def test_a_file_found_unreadable_when_the_module_is_made_is_logged_once(
    class_root, videos, tmp_path, caplog
):
    root = fill(tmp_path / "one_bad", {"a.mp4": videos["text"], "b.mp4": class_root / "a/v0.mp4"})
    spec, fmt = ClipSpec(num_frames=4, random=True), FrameFormat(size=16)
    dm = VideoDataModule(root, spec=spec, fmt=fmt, batch_size=1, labelled=False)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert sum(b["skipped"] for b in batches) == 1  # still counted in its epoch
    assert caplog.text.count("skipping") == 1 and "a.mp4: not a readable" in caplog.text
