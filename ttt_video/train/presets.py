"""The ``model`` section of a run file, shared by every task: a named preset plus overrides.

    model: {preset: ttt_linear_debug, <any field of the task's model config>: value, ...}

``preset`` names a registered preset (``ttt_video.models.list_models()``) whose fields the other
keys override; without it the fields fill the task's default config. The resolved section lists
every field, so the saved ``config.yaml`` does not depend on presets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from ttt_video.layers.config import BlockConfig
from ttt_video.models import config_from_name
from ttt_video.train.config import ConfigError, TrainerConfig, from_dict, plain

C = TypeVar("C", bound=BlockConfig)


def parse_model(cls: type, data: object, where: str, preset_type: type | None = None) -> Any:
    """``cls`` from a ``model`` mapping: an optional ``preset`` plus field overrides.

    Args:
        cls: the task's model-section dataclass.
        data: the mapping of the run file (None: all defaults).
        where: the dotted name of the section in error messages (``run.model``).
        preset_type: the config class a preset must have (default ``cls``), when ``cls``
            extends it with task fields.

    Raises:
        ConfigError: naming ``where.<field>`` (an unknown preset, one of another model kind,
            an unknown field or a bad value).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    fields = dict(data)
    preset = fields.pop("preset", None)
    base = {}
    if preset is not None:
        try:
            cfg = config_from_name(str(preset))
        except ValueError as err:
            raise ConfigError(f"{where}.preset: {err}".replace("name: ", "")) from err
        kind = preset_type or cls
        if not isinstance(cfg, kind):
            raise ConfigError(
                f"{where}.preset: {preset!r} is a {type(cfg).__name__} preset; this task "
                f"needs a {kind.__name__} one"
            )
        base = plain(cfg)
    return from_dict(cls, {**base, **fields}, where)


def model_parser(cls: type, preset_type: type | None = None) -> Callable[[object, str], Any]:
    """The ``(mapping, where)`` parser of :func:`parse_model` for ``register_task(model=...)``."""
    return lambda data, where: parse_model(cls, data, where, preset_type)


def with_trainer_options(cfg: C, trainer: TrainerConfig) -> C:
    """``cfg`` with the model options the ``trainer`` section sets (``gradient_checkpointing``)."""
    if trainer.gradient_checkpointing:
        return replace(cfg, gradient_checkpointing=True)
    return cfg
