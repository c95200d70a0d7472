"""Name, shape and config conventions of the paper's official PyTorch checkpoints
(the HuggingFace-style ``TTTForCausalLM``), and their translation to this package.

Letters: ``D`` model width, ``H`` heads, ``d = D/H`` head dim, ``b`` mini-batch size,
``n`` output width of an inner layer (``d``, or ``4d`` for TTT-MLP's first layer).

Translation rules (official <- ours):

- ``model.embed_tokens.weight`` <- ``embed.weight``; ``lm_head.weight`` <- ``head.weight``
  (or the embedding when tied); ``model.norm.weight`` <- ``backbone.norm.weight``.
- ``model.layers.{i}.`` <- ``backbone.blocks.{i}.``, with ``conv.norm`` <- ``conv_norm`` and
  ``conv.conv`` <- ``conv`` (the pre-conv) and ``seq_modeling_block`` <- ``mixer``.
- In the mixer, our ``fused_proj.weight`` is first split into the separate weights
  (``layers.ttt.split_projections``: ``qk_proj`` or ``q_proj, k_proj``, ``v_proj``,
  ``g_proj``, ``lr_weight``; loading them fuses them again). Then ``q_proj`` <- ``qk_proj``
  when ``share_qk`` (the official code names the shared projection ``q_proj``),
  ``learnable_ttt_lr_weight [H, 1, D]`` <- ``lr_weight [H, D]``,
  ``learnable_ttt_lr_bias [H, 1]`` <- ``lr_bias [H]``, ``learnable_token_idx [b]`` <-
  ``tau_offset [b]`` (both are ``eps`` of ``tau_i = max(0, 1/(i+1) + eps_i)``), and the inner
  biases ``b1, b2 [H, 1, n]`` <- ``[H, n]``. Conv weights share the ``nn.Conv1d`` layout
  ``[D, 1, w]`` (last tap on the current token) and every other name is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from ttt_video.layers.ttt import split_projections
from ttt_video.models.config import LMConfig
from ttt_video.models.pretrained import torch_load_safe

OFFICIAL_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 5504,
    "num_hidden_layers": 24,
    "num_attention_heads": 32,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "ttt_layer_type": "linear",
    "ttt_base_lr": 1.0,
    "mini_batch_size": 16,
    "pre_conv": False,
    "conv_kernel": 4,
    "share_qk": False,
    "use_gate": False,
    "tie_word_embeddings": True,
}
_RENAMED_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "width",
    "intermediate_size": "ffn_width",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "rms_norm_eps": "norm_eps",
    "rope_theta": "rope_theta",
    "ttt_base_lr": "ttt_base_lr",
    "mini_batch_size": "mini_batch_size",
    "pre_conv": "pre_conv",
    "conv_kernel": "conv_kernel",
    "share_qk": "share_qk",
    "use_gate": "use_gate",
    "tie_word_embeddings": "tie_embeddings",
}
_LAYER_TYPES = {"linear": "ttt_linear", "mlp": "ttt_mlp"}
_MIXER_RENAMES = {
    "lr_weight": "learnable_ttt_lr_weight",
    "lr_bias": "learnable_ttt_lr_bias",
    "tau_offset": "learnable_token_idx",
}
_UNSQUEEZED = {"lr_weight", "lr_bias", "b1", "b2"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class CheckpointMismatchError(ValueError):
    """A state_dict does not match the expected names/shapes; lists every offending key."""

    def __init__(self, missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> None:
        self.missing, self.unexpected, self.wrong_shape = missing, unexpected, wrong_shape
        parts = [
            f"{label} ({len(keys)}): {', '.join(keys)}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong_shape),
            )
            if keys
        ]
        super().__init__("state_dict does not match the model: " + "; ".join(parts))


def config_from_official(config: dict[str, Any]) -> LMConfig:
    """Our ``LMConfig`` for an official config dict (missing keys take the official defaults;
    keys the official model does not read, e.g. ``architectures``, are ignored)."""
    full = {**OFFICIAL_DEFAULTS, **config}
    if full["ttt_layer_type"] not in _LAYER_TYPES:
        raise ValueError(
            f"ttt_layer_type: expected 'linear' or 'mlp', got {full['ttt_layer_type']!r}"
        )
    kwargs = {ours: full[theirs] for theirs, ours in _RENAMED_FIELDS.items()}
    return LMConfig(mixer=_LAYER_TYPES[full["ttt_layer_type"]], **kwargs)


def config_to_official(cfg: LMConfig) -> dict[str, Any]:
    """The official config dict of a model that the official code can represent."""
    unsupported = [
        name
        for name, value in (
            ("mixer", cfg.mixer == "attention"),
            ("causal", not cfg.causal),
            ("qk_l2_norm", cfg.qk_l2_norm),
            ("target_ln", cfg.target_ln),
            ("bidirectional", cfg.bidirectional),
            ("residual_gate", cfg.residual_gate),
        )
        if value
    ]
    if unsupported:
        raise ValueError(f"the official TTT model has no equivalent of: {', '.join(unsupported)}")
    layer_type = {v: k for k, v in _LAYER_TYPES.items()}[cfg.mixer]
    out = {theirs: getattr(cfg, ours) for theirs, ours in _RENAMED_FIELDS.items()}
    out["ttt_base_lr"] = cfg.base_lr
    return {"model_type": "ttt", "ttt_layer_type": layer_type, **out}


def official_name(name: str) -> str:
    """The official state_dict key of one of our LM keys."""
    if name == "embed.weight":
        return "model.embed_tokens.weight"
    if name == "head.weight":
        return "lm_head.weight"
    if name == "backbone.norm.weight":
        return "model.norm.weight"
    _, _, index, rest = name.split(".", 3)
    if rest.startswith("conv_norm."):
        rest = "conv.norm." + rest.removeprefix("conv_norm.")
    elif rest.startswith("conv."):
        rest = "conv." + rest
    elif rest.startswith("mixer."):
        local = rest.removeprefix("mixer.")
        if local.startswith("qk_proj."):
            local = "q_proj." + local.removeprefix("qk_proj.")
        local = _MIXER_RENAMES.get(local, local)
        rest = "seq_modeling_block." + local
    return f"model.layers.{index}.{rest}"


def official_shape(name: str, shape: torch.Size) -> tuple[int, ...]:
    """The official shape of one of our LM tensors (a unit axis is inserted after ``H``)."""
    if name.split(".")[-1] in _UNSQUEEZED:
        return (shape[0], 1, *shape[1:])
    return tuple(shape)


def from_official_state_dict(
    cfg: LMConfig, state_dict: dict[str, Tensor], ours: dict[str, Tensor]
) -> dict[str, Tensor]:
    """Translate an official state_dict into ours, with the TTT layers' projections separate
    (``load_state_dict`` fuses them).

    Args:
        cfg: our config (from ``config_from_official``).
        state_dict: the official tensors.
        ours: our model's ``state_dict()`` (names and shapes expected).

    Raises:
        CheckpointMismatchError: listing missing, unexpected and wrongly shaped keys.
    """
    ours = split_projections(cfg, ours)
    expected = {official_name(n): (n, official_shape(n, t.shape)) for n, t in ours.items()}
    given = dict(state_dict)
    if cfg.tie_embeddings and "lm_head.weight" in given:
        head, embed = given.pop("lm_head.weight"), given.get("model.embed_tokens.weight")
        if embed is not None and (head.shape != embed.shape or not torch.equal(head, embed)):
            raise ValueError(
                "lm_head.weight: differs from model.embed_tokens.weight but tie_word_embeddings is true"
            )
    missing = sorted(k for k in expected if k not in given)
    unexpected = sorted(k for k in given if k not in expected)
    wrong = sorted(
        f"{k} {tuple(given[k].shape)} != {expected[k][1]}"
        for k in expected
        if k in given and tuple(given[k].shape) != expected[k][1]
    )
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(missing, unexpected, wrong)
    return {n: given[k].reshape(ours[n].shape) for k, (n, _) in expected.items()}


def to_official_state_dict(cfg: LMConfig, ours: dict[str, Tensor]) -> dict[str, Tensor]:
    """Translate our state_dict into the official names and shapes (``lm_head.weight`` is
    written even when tied, as the official model's ``state_dict()`` does)."""
    ours = split_projections(cfg, ours)
    out = {official_name(n): t.reshape(official_shape(n, t.shape)) for n, t in ours.items()}
    if cfg.tie_embeddings:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


def read_official_folder(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The config dict and state_dict of an official model folder: ``config.json`` plus
    ``model.safetensors`` or ``pytorch_model.bin`` (read with ``weights_only=True``: a file
    holding anything but tensors and plain data is refused).

    Raises:
        FileNotFoundError: the folder, its ``config.json`` or both weight files are missing.
        ValueError: a file that cannot be read (named in the message).
    """
    folder = Path(path)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: missing; {folder} is not an official model folder")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path}: not valid JSON ({err})") from err
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{folder}: holds neither {' nor '.join(WEIGHT_FILES)}")
    if weights.suffix == ".bin":
        return config, torch_load_safe(weights)
    try:
        return config, load_file(weights)
    except SafetensorError as err:
        raise ValueError(f"{weights}: not a readable safetensors file ({err})") from err
