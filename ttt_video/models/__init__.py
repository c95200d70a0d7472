"""Whole networks built from a typed config.

- ``LMConfig`` / ``BackboneConfig``: typed configurations.
- ``Backbone`` (state ``BackboneState``): the block stack on embeddings, shared with video.
- ``LanguageModel``: ``forward(input_ids, state) -> (logits, state)``, ``generate(...)``.
- ``from_name`` / ``register_model`` / ``list_models``: named presets.
- ``from_official`` / ``to_official``: the paper's PyTorch checkpoints (a dict or a folder).
- ``model.save_pretrained(dir)`` / ``LanguageModel.from_pretrained(dir)`` (also ``VideoModel``):
  a portable folder, ``config.json`` + ``model.safetensors`` (``pretrained.py``).
"""

from ttt_video.models.backbone import Backbone, BackboneState
from ttt_video.models.config import BackboneConfig, LMConfig
from ttt_video.models.lm import LanguageModel, from_official, to_official
from ttt_video.models.official import CheckpointMismatchError
from ttt_video.models.registry import config_from_name, from_name, list_models, register_model

__all__ = [
    "Backbone",
    "BackboneConfig",
    "BackboneState",
    "CheckpointMismatchError",
    "LMConfig",
    "LanguageModel",
    "config_from_name",
    "from_name",
    "from_official",
    "list_models",
    "register_model",
    "to_official",
]
