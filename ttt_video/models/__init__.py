"""Whole networks built from a typed config.

- ``LMConfig`` / ``BackboneConfig``: typed configurations.
- ``Backbone`` (state ``BackboneState``): the block stack on embeddings, shared with video.
- ``LanguageModel``: ``forward(input_ids, state) -> (logits, state)``, ``generate(...)``.
- ``from_name`` / ``register_model`` / ``list_models``: named presets.
- ``from_official`` / ``to_official``: the paper's PyTorch checkpoints.
"""

from .backbone import Backbone, BackboneState
from .config import BackboneConfig, LMConfig
from .lm import LanguageModel, from_official, to_official
from .official import CheckpointMismatchError
from .registry import config_from_name, from_name, list_models, register_model

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
