"""Named model presets (``from_name("ttt_linear_125m")``), registered by decorator.

Names: ``{mixer}_{size}`` for the paper's M (Mamba-backbone) TTT models, ``{mixer}_t_{size}``
for the T (Transformer-backbone) variant, ``attention_{size}`` for the Transformer baseline;
``size`` in ``125m, 350m, 760m, 1.3b`` (kernels/README.md section 9, vocab 32000, b = 16) or
``debug`` (2 blocks, width 64, 4 heads, vocab 257: the byte-level tokenizer).
Video presets: ``video_{mixer}_{size}`` with ``size`` in ``debug, small, base`` (``VideoConfig``).
LaCT (large-chunk TTT with window attention, T backbone): ``lact_{size}`` for the sizes above
(``LACT_SETTINGS``) and ``video_lact_{size}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from functools import partial
from typing import Any

from ttt_video.models.config import LMConfig
from ttt_video.models.lm import LanguageModel
from ttt_video.models.video import VideoModel
from ttt_video.models.video_config import VideoConfig
from ttt_video.validation import unknown_field_hint

ModelConfig = LMConfig | VideoConfig
"""What a preset returns: ``LMConfig`` (language models) or ``VideoConfig`` (``video_*``)."""

_PRESETS: dict[str, Callable[[], ModelConfig]] = {}

PAPER_SIZES: dict[str, dict[str, int]] = {
    "125m": {"num_layers": 12, "width": 768, "num_heads": 12, "ffn_width": 2048},
    "350m": {"num_layers": 24, "width": 1024, "num_heads": 16, "ffn_width": 2736},
    "760m": {"num_layers": 24, "width": 1536, "num_heads": 16, "ffn_width": 4096},
    "1.3b": {"num_layers": 24, "width": 2048, "num_heads": 32, "ffn_width": 5504},
    "debug": {"num_layers": 2, "width": 64, "num_heads": 4, "ffn_width": 128, "vocab_size": 257},
}
BACKBONES: dict[str, dict[str, bool]] = {
    "m": {"pre_conv": True, "share_qk": True, "use_gate": True},
    "t": {"pre_conv": False, "share_qk": False, "use_gate": False},
}


def register_model(fn: Callable[[], ModelConfig] | None = None, *, name: str | None = None):
    """Register a preset: a function returning an ``LMConfig`` or a ``VideoConfig``, under its
    name (or ``name``).

    Use as ``@register_model`` or ``register_model(factory, name="...")``.
    """

    def add(f: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
        key = name or f.__name__
        if key in _PRESETS:
            raise ValueError(f"name: preset {key!r} is already registered")
        _PRESETS[key] = f
        return f

    return add(fn) if fn is not None else add


def list_models() -> list[str]:
    """Names of every registered preset, sorted."""
    return sorted(_PRESETS)


def config_from_name(name: str, **overrides: Any) -> ModelConfig:
    """The config of preset ``name`` (``VideoConfig`` for ``video_*``, else ``LMConfig``) with
    fields replaced by ``overrides``."""
    if name not in _PRESETS:
        raise ValueError(f"name: unknown preset {name!r}; valid: {', '.join(list_models())}")
    cfg = _PRESETS[name]()
    names = [f.name for f in fields(cfg)]
    for key in overrides:
        if key not in names:
            hint = unknown_field_hint(key, names)
            raise TypeError(f"{name}: {type(cfg).__name__} has no field {key!r}; {hint}")
    return replace(cfg, **overrides)


def from_name(name: str, **overrides: Any) -> LanguageModel | VideoModel:
    """Build the model of preset ``name`` (``overrides`` replace config fields); video presets
    (``video_*``) build a ``VideoModel``."""
    cfg = config_from_name(name, **overrides)
    return VideoModel(cfg) if isinstance(cfg, VideoConfig) else LanguageModel(cfg)


def _paper_config(mixer: str, backbone: str, size: str) -> LMConfig:
    return LMConfig(mixer=mixer, **BACKBONES[backbone], **PAPER_SIZES[size])


for _size in PAPER_SIZES:
    for _mixer in ("ttt_linear", "ttt_mlp"):
        register_model(partial(_paper_config, _mixer, "m", _size), name=f"{_mixer}_{_size}")
        register_model(partial(_paper_config, _mixer, "t", _size), name=f"{_mixer}_t_{_size}")
    register_model(partial(_paper_config, "attention", "t", _size), name=f"attention_{_size}")

LACT_SETTINGS: dict[str, dict[str, int]] = {
    # the paper's language models: chunk C = window = 2048 tokens, 4 wide fast-weight heads
    **{
        s: {"mini_batch_size": 2048, "lact_window": 2048, "lact_num_heads": 4}
        for s in ("125m", "350m", "760m", "1.3b")
    },
    "debug": {"mini_batch_size": 64, "lact_window": 64, "lact_num_heads": 2},
}
"""Per size: chunk size (``mini_batch_size``), window and fast-weight heads of ``lact_{size}``."""


def _lact_config(size: str) -> LMConfig:
    return LMConfig(mixer="lact", **BACKBONES["t"], **PAPER_SIZES[size], **LACT_SETTINGS[size])


for _size in PAPER_SIZES:
    register_model(partial(_lact_config, _size), name=f"lact_{_size}")

VIDEO_SIZES: dict[str, dict[str, int]] = {
    "debug": {"num_layers": 2, "width": 32, "num_heads": 2, "ffn_width": 64},
    "small": {"num_layers": 2, "width": 128, "num_heads": 4, "ffn_width": 256},
    "base": {"num_layers": 6, "width": 256, "num_heads": 4, "ffn_width": 512},
}


def _video_config(mixer: str, size: str) -> VideoConfig:
    """``video_{mixer}_{size}``: 64x64 grayscale, 16x16 patches, T backbone; TTT layers use the
    video variant's non-causal mini-batches of one frame (attention stays causal). LaCT: chunks
    of one frame (update, then read), a window of 64 tokens (4 frames of 16 tokens before the
    chunk) and half as many fast-weight heads as attention heads."""
    ttt = {"causal": False, "frames_per_mini_batch": 1} if mixer != "attention" else {}
    if mixer == "lact":
        ttt.update(lact_window=64, lact_num_heads=VIDEO_SIZES[size]["num_heads"] // 2)
    return VideoConfig(mixer=mixer, **BACKBONES["t"], **VIDEO_SIZES[size], **ttt)


for _size in VIDEO_SIZES:
    for _mixer in ("ttt_linear", "ttt_mlp", "attention", "lact"):
        register_model(partial(_video_config, _mixer, _size), name=f"video_{_mixer}_{_size}")
