"""Manifest and class-folder datasets, skip-and-log of bad files, the DataModule, index_videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import decode_index, make_video

from ttt_video.data.video.folder import VideoClipDataset, VideoDataModule, collate_clips
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


def test_index_videos_script(class_root, tmp_path, capsys):
    from ttt_video.apps.prepare import index as module

    out = tmp_path / "index.json"
    assert module.main([str(class_root), "--out", str(out), "--class_folders"]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 7 and "6 decodable, 1 not" in capsys.readouterr().out
    bad = [r for r in rows if not r["decodable"]]
    assert bad[0]["path"] == "b/broken.mp4" and "not a readable" in bad[0]["error"]
    good = next(r for r in rows if r["path"] == "a/v1.mp4")
    assert (good["num_frames"], good["fps"], good["width"], good["label"]) == (21, 10.0, 32, "a")
    items, names = read_manifest(out)
    assert names == ["a", "b"] and len(items) == 7
