"""Every run YAML under configs/ loads and builds its model (on the meta device: no memory)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ttt_video.train.config import resolved_dict
from ttt_video.train.tasks import get_task, load_run_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("**/*.yaml"))


def test_configs_exist():
    names = {p.stem for p in CONFIGS}
    for mixer in ("ttt_linear", "ttt_mlp", "attention"):
        assert f"{mixer}_debug" in names
        for size in ("125m", "350m", "760m", "1.3b"):
            assert {f"{mixer}_{size}_{d}" for d in ("pile2k", "pile8k", "books32k")} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_loads_and_builds(path):
    run = load_run_config(path)
    assert run.name == path.stem
    again = load_run_config(path)
    assert resolved_dict(run) == resolved_dict(again)
    with torch.device("meta"):
        model = get_task(run.task).build_model(run)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_lm_baselines_follow_the_paper_recipe():
    for path in CONFIGS:
        if path.parent.name != "lm" or "debug" in path.stem or "austen" in path.stem:
            continue
        run = load_run_config(path)
        t = run.trainer
        assert t.tokens_per_step == 2**19, path
        tokens = t.max_steps * t.tokens_per_step
        params = {"125m": 125e6, "350m": 350e6, "760m": 760e6, "1.3b": 1.3e9}
        size = next(s for s in params if f"_{s}_" in path.stem)
        assert 18 <= tokens / params[size] <= 21, path
        assert run.optim.min_lr == 1e-5 and run.optim.warmup_fraction == 0.1
        assert (run.optim.ttt_base_lr_start == 0.01) == (run.model.mixer == "ttt_mlp")


@pytest.mark.parametrize("family", ["debug", "austen_bpe2k"])
def test_austen_models_match_in_parameters(family):
    counts = []
    for mixer in ("ttt_linear", "ttt_mlp", "attention"):
        run = load_run_config(ROOT / "configs" / "lm" / f"{mixer}_{family}.yaml")
        counts.append(sum(p.numel() for p in get_task("lm").build_model(run).parameters()))
    assert max(counts) / min(counts) < 1.05
