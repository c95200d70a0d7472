"""``ttt-video smoke``: the kernel check runs end to end and shows learning at test time."""

import json

import pytest

from ttt_video.apps.cli import main


def test_smoke_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["smoke", "--out", str(out), "--tokens", "2048"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "smoke.png").stat().st_size > 10_000
    for kind in ("linear", "mlp"):
        assert metrics["dual_vs_naive_rel_err"][kind] < 1e-12
        # the inner loop learns the hidden map: the error falls well below where it started
        assert metrics["error_before_change"][kind] < 0.5 * metrics["error_first_64"][kind]
    assert "learning at test time" in capsys.readouterr().out


def test_a_stream_too_short_for_the_summary_windows_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["smoke", "--out", str(tmp_path / "run"), "--tokens", "256"])
    assert "--tokens must be at least 512" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
