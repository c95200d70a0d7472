"""Atomic writes, JSON files and the memory probe shared by the runner and the apps."""

from __future__ import annotations

import json
import sys

import pytest

from ttt_video.io_utils import atomic_open, rss_bytes, write_atomic, write_json


def test_atomic_writes_replace_whole_files_or_nothing(tmp_path):
    path = tmp_path / "status.json"
    write_json(path, {"state": "running"})
    assert json.loads(path.read_text()) == {"state": "running"}
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write(b"{trunc")
        raise RuntimeError("crash mid-write")
    assert json.loads(path.read_text()) == {"state": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary left
    write_atomic(path, "text\n")
    assert path.read_text() == "text\n"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_rss_is_measured_on_linux():
    assert rss_bytes() > 0
