"""Presets: every name builds; the paper sizes' parameter counts."""

import pytest
import torch

from ttt_video.models import config_from_name, from_name, list_models
from ttt_video.models.registry import PAPER_SIZES

NOMINAL = {"125m": 125e6, "350m": 350e6, "760m": 760e6, "1.3b": 1.3e9}


def formula(mixer, m, size):
    """Closed-form parameter count of a paper-size model with the tied head."""
    s = {"vocab_size": 32000, **PAPER_SIZES[size]}
    D, H, F, L, V = s["width"], s["num_heads"], s["ffn_width"], s["num_layers"], s["vocab_size"]
    d = D // H
    block = 3 * D * F + 2 * D  # SwiGLU, seq_norm, ffn_norm
    if mixer == "attention":
        block += 4 * D * D
    else:
        block += 2 * D * D + (D * D + 2 * (4 * D + D) if m else 2 * D * D)  # v, o, q/k (+convs)
        block += D * D if m else 0  # gate
        block += D * H + H + 16 + 2 * H * d + 2 * D  # lr gate, tau, inner LN, post_norm
        block += (
            H * d * d + H * d if mixer == "ttt_linear" else 2 * H * d * 4 * d + H * 4 * d + H * d
        )
        block += 4 * D + D + D if m else 0  # pre-conv weight, bias, norm
    return V * D + L * block + D


@pytest.mark.parametrize(
    "name", [n for n in list_models() if n.endswith("_debug") and not n.startswith("video_")]
)
def test_debug_presets_build_and_run(name):
    lm = from_name(name)
    logits, _ = lm(torch.randint(0, 257, (1, 18)))
    assert logits.shape == (1, 18, 257)
    assert config_from_name(name).num_layers == 2


@pytest.mark.parametrize("size", list(NOMINAL))
@pytest.mark.parametrize(
    "mixer, m",
    [("ttt_linear", True), ("ttt_linear", False), ("ttt_mlp", True), ("attention", False)],
)
def test_paper_sizes_parameter_counts(mixer, m, size):
    name = f"{mixer}_{size}" if m or mixer == "attention" else f"{mixer}_t_{size}"
    with torch.device("meta"):
        count = from_name(name).num_parameters()
    assert count == formula(mixer, m, size)
    # The spec's table with a 32000-token tied vocabulary lands 1-4% under the nominal size for
    # 350m..1.3b; 125m is 12% under (the "125M" name comes from GPT-3's 50k vocabulary).
    tol = 0.13 if size == "125m" else 0.045
    assert abs(count / NOMINAL[size] - 1) < tol, f"{name}: {count / 1e6:.1f}M"


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match="ttt_linear_125m"):
        from_name("ttt_linear_7b")


def test_overrides_are_validated():
    assert config_from_name("ttt_linear_debug", mini_batch_size=8).mini_batch_size == 8
    with pytest.raises(ValueError, match="mixer"):
        config_from_name("ttt_linear_debug", mixer="rnn")


def test_unknown_override_names_close_fields():
    with pytest.raises(TypeError, match="LMConfig has no field 'num_head'; did you mean num_heads"):
        from_name("ttt_linear_debug", num_head=8)
    with pytest.raises(TypeError, match="valid fields: .*image_size"):
        config_from_name("video_ttt_linear_debug", zzz=1)
