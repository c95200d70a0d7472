"""Exporting a real run, loading it back without Lightning, and weights-only checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

import ttt_video
from ttt_video.apps.export import CARD_FILE, export_run
from ttt_video.models import LanguageModel
from ttt_video.models.pretrained import CONFIG_FILE, WEIGHTS_FILE
from ttt_video.train.config import ConfigError
from ttt_video.train.runner import fit, load_module, load_run_from_checkpoint, validate
from ttt_video.train.tasks import load_run_config


class RunsCode:
    """Unpickling calls ``open(marker, "w")``: a stand-in for any code a pickle can run."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_export_and_load_a_real_run(write_config, tmp_path):
    run = load_run_config(write_config())
    status = fit(run)
    ckpt = run.run_dir / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, weights_only=True)  # what Lightning wrote is tensors and plain data
    assert {"optimizer_states", "lr_schedulers", "callbacks", "run_config"} <= set(raw)

    out = export_run(ckpt, tmp_path / "export")
    assert {p.name for p in out.iterdir()} == {CONFIG_FILE, WEIGHTS_FILE, CARD_FILE}
    assert json.loads((out / CONFIG_FILE).read_text())["model_type"] == "lm"
    card = (out / CARD_FILE).read_text()
    assert f"completed at step {status['step']}" in card
    assert f"| val/loss | {status['val/loss']:.6g} |" in card
    assert "block_len: 32" in card and "num_layers: 1" in card  # data and model sections

    folder, checkpoint = ttt_video.load(out), ttt_video.load(ckpt, device="auto")
    _, module, _ = load_module(ckpt, device="cpu")
    assert type(folder) is type(checkpoint) is LanguageModel
    assert not folder.training and not checkpoint.training
    assert folder.cfg == checkpoint.cfg == module.model.cfg
    ids = torch.randint(
        0, folder.cfg.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        expected = module.model(ids)[0]
        assert torch.equal(folder(ids)[0], expected) and torch.equal(checkpoint(ids)[0], expected)
    # commands that need the run (validate, generate, eval-lm, demos) say what to give instead
    with pytest.raises(ConfigError, match=r"export is an exported model folder .*/last.ckpt"):
        load_run_from_checkpoint(out)
    with pytest.raises(ConfigError, match=r"checkpoints is a folder; .* \(.* has .*last.ckpt"):
        validate(run, ckpt.parent, device="cpu")

    metrics = validate(run, ckpt, device="cpu")
    assert metrics["val/loss"] == pytest.approx(status["val/loss"], rel=1e-5)


def test_a_checkpoint_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    marker = tmp_path / "ran"
    torch.save({"run_config": {"task": "lm"}, "state_dict": {}, "x": RunsCode(marker)}, path)
    for load in (load_run_from_checkpoint, ttt_video.load, lambda p: export_run(p, tmp_path)):
        with pytest.raises(ValueError, match="evil.ckpt: refused: it holds objects other than"):
            load(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.ckpt"
    for text in ("not a torch file", "every note\n" * 10):  # two unpickling failures
        path.write_text(text)
        with pytest.raises(ValueError, match="junk.ckpt: not a file written by torch.save$"):
            ttt_video.load(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"junk.ckpt: not a readable torch file \(empty or cut"):
        ttt_video.load(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="junk.ckpt: not a ttt-video checkpoint"):
        ttt_video.load(path)
