"""resolve_device: the --device names, and clear errors for a bad name or a missing GPU."""

import pytest
import torch

import ttt_video
from ttt_video.devices import resolve_device
from ttt_video.models import LanguageModel, LMConfig
from ttt_video.models.pretrained import load_pretrained


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_names(no_gpu):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_and_cuda_with_a_gpu(one_gpu):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="'cuda:1' asked for, but this machine has 1 GPU"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "", "cpu:0", "mps"])
def test_bad_name(spec):
    with pytest.raises(ValueError, match="expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(spec)


@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu(spec, no_gpu):
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        resolve_device(spec)


def test_loaders_check_the_device(tmp_path, no_gpu):
    cfg = LMConfig(width=32, num_heads=2, ffn_width=64, num_layers=1, vocab_size=20)
    LanguageModel(cfg).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_pretrained(tmp_path, device="cuda")
    with pytest.raises(ValueError, match="device: unknown 'gpu'"):
        ttt_video.load(tmp_path, device="gpu")
    assert ttt_video.load(tmp_path, device="auto").embed.weight.device == torch.device("cpu")
