"""save_pretrained / from_pretrained (config.json + model.safetensors), the official folder
form of from_official, and the errors of a broken folder."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

import ttt_video
from ttt_video.models import LanguageModel, LMConfig, from_official, to_official
from ttt_video.models.pretrained import CONFIG_FILE, WEIGHTS_FILE, load_pretrained
from ttt_video.models.video import VideoModel
from ttt_video.models.video_config import VideoConfig

LM_SMALL = dict(width=32, num_heads=2, ffn_width=64, num_layers=2, vocab_size=50)
VIDEO_SMALL = dict(width=32, num_heads=2, ffn_width=64, num_layers=2, image_size=32, patch_size=8)


def jittered(model, seed: int = 0):
    """The model with every parameter moved off its init (zero-initialised heads hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def lm(**kw) -> LanguageModel:
    torch.manual_seed(0)
    return jittered(LanguageModel(LMConfig(**{**LM_SMALL, **kw})))


def ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(
        0, LM_SMALL["vocab_size"], (2, 21), generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize(
    "kw",
    [{}, {"tie_embeddings": False, "mixer": "ttt_mlp"}, {"mixer": "attention", "ttt_base_lr": 0.5}],
    ids=["tied", "untied_mlp", "attention"],
)
def test_lm_round_trip_is_exact(kw, tmp_path):
    model = lm(**kw)
    assert model.save_pretrained(tmp_path / "m") == tmp_path / "m"
    saved = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    assert saved["model_type"] == "lm" and saved["ttt_video_version"] == ttt_video.__version__
    loaded = LanguageModel.from_pretrained(tmp_path / "m")
    assert loaded.cfg == model.cfg and not loaded.training
    x = ids()
    assert torch.equal(loaded(x)[0], model(x)[0])
    assert torch.equal(loaded.generate(x, 5, temperature=0), model.generate(x, 5, temperature=0))
    assert isinstance(ttt_video.load(tmp_path / "m"), LanguageModel)


def test_tied_head_stays_tied(tmp_path):
    model = lm()
    model.save_pretrained(tmp_path)
    assert set(load_file(tmp_path / WEIGHTS_FILE)) == set(model.state_dict())  # stored once
    loaded = LanguageModel.from_pretrained(tmp_path)
    assert loaded.head is None and loaded.num_parameters() == model.num_parameters()
    x = ids()
    with torch.no_grad():
        loaded.embed.weight[:, 0] += 1.0  # the output head must move with the embedding
    assert not torch.equal(loaded(x)[0], model(x)[0])


@pytest.mark.parametrize(
    "kw",
    [
        dict(mixer="ttt_linear", motion_input=True, decoder="conv", num_classes=5),
        dict(mixer="ttt_mlp", frames_per_mini_batch=2),
        dict(mixer="ttt_linear", causal=False, qk_l2_norm=True, target_ln=True, residual_gate=True),
    ],
    ids=["conv_classify", "mlp_two_frames", "non_causal"],
)
def test_video_round_trip_is_exact(kw, tmp_path):
    torch.manual_seed(0)
    model = jittered(VideoModel(VideoConfig(**{**VIDEO_SMALL, **kw})))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["model_type"] == "video"
    loaded = load_pretrained(tmp_path)
    assert type(loaded) is VideoModel and loaded.cfg == model.cfg and not loaded.training
    frames = torch.rand(2, 4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    a, b = model(frames), loaded(frames)
    assert torch.equal(a.features, b.features) and torch.equal(a.next_frames, b.next_frames)
    assert (a.logits is None and b.logits is None) or torch.equal(a.logits, b.logits)


def test_timm_encoder_folder_needs_no_local_weights_file(tmp_path):
    import timm

    torch.save(
        timm.create_model("resnet10t", num_classes=0, in_chans=1).state_dict(),
        tmp_path / "encoder.pth",
    )
    kw = dict(encoder="timm", timm_name="resnet10t", decoder="none", num_classes=3)
    cfg = VideoConfig(**{**VIDEO_SMALL, **kw, "timm_weights": str(tmp_path / "encoder.pth")})
    model = VideoModel(cfg).eval()
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "encoder.pth").unlink()  # the folder goes to a machine without this file
    loaded = VideoModel.from_pretrained(tmp_path / "m")
    assert loaded.cfg == replace(cfg, timm_weights=None)
    assert not any(p.requires_grad for p in loaded.encoder.parameters())  # still frozen
    frames = torch.rand(1, 3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded(frames).logits, model(frames).logits)


def test_wrong_model_class_is_named(tmp_path):
    lm().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a 'lm' model"):
        VideoModel.from_pretrained(tmp_path)


def test_missing_folder_and_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        load_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=f"{CONFIG_FILE}: missing"):
        LanguageModel.from_pretrained(tmp_path)
    lm().save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=f"{WEIGHTS_FILE}: missing"):
        ttt_video.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="elsewhere: not found"):
        ttt_video.load(tmp_path / "elsewhere")


def broken(folder, what: str) -> None:
    """Damage one part of a saved folder."""
    config = folder / CONFIG_FILE
    data = json.loads(config.read_text())
    if what == "json":
        config.write_text(config.read_text()[:40])
    elif what == "model_type":
        config.write_text(json.dumps({**data, "model_type": "gpt"}))
    elif what == "field":
        config.write_text(json.dumps({**data, "num_experts": 4}))
    elif what == "value":
        config.write_text(json.dumps({**data, "width": -32}))
    elif what == "truncated":
        raw = (folder / WEIGHTS_FILE).read_bytes()
        (folder / WEIGHTS_FILE).write_bytes(raw[: len(raw) // 2])
    elif what == "other_weights":
        config.write_text(json.dumps({**data, "num_layers": 3}))
    elif what == "missing_tensor":
        tensors = load_file(folder / WEIGHTS_FILE)
        tensors.pop("backbone.norm.weight")
        save_file(tensors, folder / WEIGHTS_FILE)


@pytest.mark.parametrize(
    "what, message",
    [
        ("json", f"{CONFIG_FILE}: not valid JSON"),
        ("model_type", "model_type 'gpt' is not one of 'lm', 'video'"),
        ("field", r"unknown LMConfig fields \['num_experts'\]"),
        ("value", f"{CONFIG_FILE}: width"),
        ("truncated", f"{WEIGHTS_FILE}: cannot be loaded"),
        ("other_weights", f"{WEIGHTS_FILE}: does not match .*missing"),
        ("missing_tensor", r"missing \['backbone.norm.weight'\]"),
    ],
)
def test_broken_folder_gives_a_clear_error(what, message, tmp_path):
    lm().save_pretrained(tmp_path)
    broken(tmp_path, what)
    with pytest.raises(ValueError, match=message) as err:
        load_pretrained(tmp_path)
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_from_official_reads_a_folder(weights, tmp_path):
    model = lm(mixer="ttt_mlp")
    config, state_dict = to_official(model)
    (tmp_path / "config.json").write_text(json.dumps(config))
    if weights.endswith(".safetensors"):  # as HuggingFace saves it: the tied head dropped
        state_dict.pop("lm_head.weight")
        save_file({k: v.contiguous() for k, v in state_dict.items()}, tmp_path / weights)
    else:
        torch.save(state_dict, tmp_path / weights)
    loaded = from_official(tmp_path)
    assert torch.equal(loaded(ids())[0], model(ids())[0])
    assert torch.equal(from_official(str(tmp_path)).embed.weight, model.embed.weight)


class RunsCode:
    """Unpickling calls ``open(marker, "w")``: a stand-in for any code a pickle can run."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_from_official_refuses_a_pickle_that_runs_code(tmp_path):
    config, state_dict = to_official(lm())
    (tmp_path / "config.json").write_text(json.dumps(config))
    torch.save({**state_dict, "extra": RunsCode(tmp_path / "ran")}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin: refused"):
        from_official(tmp_path)
    assert not (tmp_path / "ran").exists()


def test_from_official_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json: missing"):
        from_official(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(to_official(lm())[0]))
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor pytorch_model.bin"):
        from_official(tmp_path)
    with pytest.raises(ValueError, match="either a folder or"):
        from_official(tmp_path, {})
    with pytest.raises(ValueError, match="required with a config dict"):
        from_official({})


def test_load_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    lm().save_pretrained(tmp_path / "mine")
    assert isinstance(ttt_video.load("~/mine"), LanguageModel)
