"""The task registry: how a run's ``task`` name becomes a LightningModule and a DataModule.

Contract for a task (e.g. ``"lm"`` in ``lm_task.py``; video tasks in ``video_tasks.py``)::

    @register_task("video_predict", model=VideoModelConfig, data=VideoDataConfig,
                   build_model=lambda run: VideoModel(run.model))
    def build_video_predict(run: RunConfig) -> tuple[L.LightningModule, L.LightningDataModule]:
        ...  # run.model / run.data are instances of the classes given above

- ``model`` / ``data``: a dataclass (filled by ``config.from_dict``: unknown fields and bad
  types are reported by name) or a function ``(mapping, where) -> object`` raising
  ``config.ConfigError`` naming ``where.<field>``. The resolved objects must be dataclasses
  (``config.plain`` turns them back into the saved ``config.yaml``).
- ``build_model(run) -> nn.Module``: the bare model from the resolved run, touching no
  data; ``tests/train/test_configs.py`` builds every ``configs/**.yaml`` with it on the
  meta device.
- The builder receives the resolved :class:`~ttt_video.train.config.RunConfig` (``optim``
  and ``trainer`` are shared by every task) and returns ``(module, datamodule)``. It may
  raise ``ConfigError`` (bad combination of fields) or ``FileNotFoundError`` (missing data,
  with the ``data_prep`` command to run); both happen before the run folder is created.
- Optional hooks the runner uses when the module defines them: ``tokens_in(batch) -> int``
  (tokens/s, MFU) and ``flops_per_token() -> float`` (MFU; e.g. ``6 * parameters``).
- Optional data-config property ``tokens_per_batch`` (tokens in one micro-batch on one
  device): needed for ``trainer.tokens_per_step``.

Adding a task module: append its import path to ``TASK_MODULES`` below (one line). Modules
are imported on first lookup, so importing this registry stays cheap.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttt_video.train.config import ConfigError, RunConfig, from_dict, read_yaml, set_dotted

TASK_MODULES: tuple[str, ...] = ("ttt_video.train.lm_task", "ttt_video.train.video_tasks")

Parser = Callable[[Any, str], Any]


@dataclass(frozen=True)
class Task:
    """A registered task: its section parsers and its builder."""

    name: str
    parse_model: Parser
    parse_data: Parser
    build: Callable[[Any], tuple[Any, Any]]
    build_model: Callable[[Any], Any]


_TASKS: dict[str, Task] = {}
_loaded = False


def _parser(spec: type | Parser) -> Parser:
    if isinstance(spec, type):
        return lambda data, where: from_dict(spec, data, where)
    return spec


def register_task(
    name: str, *, model: type | Parser, data: type | Parser, build_model: Callable[[Any], Any]
):
    """Decorator registering a builder under ``name`` (see the module docstring)."""

    def add(build: Callable[[Any], tuple[Any, Any]]) -> Callable[[Any], tuple[Any, Any]]:
        if name in _TASKS:
            raise ValueError(f"task: {name!r} is already registered")
        _TASKS[name] = Task(name, _parser(model), _parser(data), build, build_model)
        return build

    return add


def _load_all() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in TASK_MODULES:
            importlib.import_module(module)


def list_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    _load_all()
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    """The task ``name``; ``ConfigError`` naming the field and listing the valid names."""
    _load_all()
    if name not in _TASKS:
        raise ConfigError(f"run.task: unknown task {name!r}; valid: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def build_run_config(raw: dict, source: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Resolve a raw mapping plus dotted ``overrides`` into a :class:`RunConfig`.

    ``model`` and ``data`` are converted by the task's registered parsers. Errors name
    ``source`` (the file) and the field, and the flag when an override set the field.
    """
    overrides = overrides or {}
    tree = dict(raw)
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    try:
        sections = {k: tree.pop(k, {}) for k in ("model", "data")}
        run = from_dict(RunConfig, tree, "run")
        task = get_task(run.task)
        run.model = task.parse_model(sections["model"], "run.model")
        run.data = task.parse_data(sections["data"], "run.data")
    except ConfigError as err:
        raise ConfigError(_with_source(str(err), source, overrides)) from err
    if run.name is None:
        run.name = Path(source).stem
    return run


def _with_source(message: str, source: str, overrides: dict[str, Any]) -> str:
    """``message`` prefixed with the file, and naming the flag that set the field, if any.

    A flag is blamed when it set the field itself (or a field under it), or when the message
    is about a field of the same section and names the flag's field as a whole word (a
    cross-field rule such as ``val_check_interval ... max_steps``). The list of valid names
    after an unknown field is not such a mention.
    """
    message = message.removeprefix("run.")
    field_path = message.split(":", 1)[0]
    section = field_path.rpartition(".")[0]
    reason = message.split(":", 1)[1] if ":" in message else ""
    reason = reason.split("; valid fields:")[0].split("; did you mean")[0]

    def involved(key: str) -> bool:
        if field_path == key or field_path.startswith(key + "."):
            return True
        key_section, _, leaf = key.rpartition(".")
        return key_section == section and re.search(rf"\b{re.escape(leaf)}\b", reason) is not None

    flags = [k for k in overrides if involved(k)]
    hint = f" (set by --{flags[0]} on the command line)" if flags else ""
    return f"{source}: {message}{hint}"


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read ``path`` and resolve it with dotted ``overrides`` (see :func:`build_run_config`)."""
    return build_run_config(read_yaml(path), str(path), overrides)
