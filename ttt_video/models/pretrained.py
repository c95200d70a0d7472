"""Save a model to a folder and load it back: ``config.json`` + ``model.safetensors``.

Folder layout (written by ``save_pretrained``, read by ``from_pretrained``)::

    config.json         {"model_type": "lm" | "video", "ttt_video_version": "...",
                         <every field of the model's config dataclass>}
    model.safetensors   the model's tensors (``safetensors``: no pickle, so loading runs no
                        code; a tied embedding is stored once and re-tied by the model)

The config is plain JSON, so the folder loads with this package alone: no Lightning, no run
file, no data. Tensors are copied into a freshly built model, so they take its dtype (float32
unless torch's default dtype says otherwise).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from ttt_video import __version__
from ttt_video.devices import resolve_device

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_META_KEYS = ("model_type", "ttt_video_version")


class Pretrained:
    """Mixin giving a model ``save_pretrained`` / ``from_pretrained`` (module docstring).

    A subclass is an ``nn.Module`` holding its config dataclass in ``self.cfg``; it names its
    ``model_type`` (the ``config.json`` key) and ``config_class`` (built from the saved fields).
    """

    model_type: ClassVar[str]
    config_class: ClassVar[type]

    def saved_config(self) -> Any:
        """The config written to ``config.json`` (``self.cfg``; subclasses drop fields that
        only matter on this machine, such as a local weights file)."""
        return self.cfg

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if
        needed, files replaced); returns the folder."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "model_type": self.model_type,
            "ttt_video_version": __version__,
            **asdict(self.saved_config()),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        save_model(self, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu"):
        """The model saved in ``directory``, in eval mode on ``device`` (``"auto"``, ``"cpu"``,
        ``"cuda"``, ``"cuda:N"``; see ``ttt_video.devices.resolve_device``).

        Raises:
            FileNotFoundError: the folder, its ``config.json`` or its weights are missing.
            ValueError: a config or weights file that cannot be read, a config of another
                model type, or weights that do not match the config (the path is named).
        """
        target = resolve_device(device)
        directory = Path(directory)
        model_cls, cfg = read_pretrained_config(directory)
        if model_cls is not cls:
            raise ValueError(
                f"{directory / CONFIG_FILE}: holds a {model_cls.model_type!r} model "
                f"({model_cls.__name__}), not {cls.model_type!r} ({cls.__name__})"
            )
        model = cls(cfg)
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: missing ({directory} has no model weights)")
        try:
            missing, unexpected = load_model(model, weights, strict=False)
        except (SafetensorError, RuntimeError) as err:
            raise ValueError(
                f"{weights}: cannot be loaded into the model of {CONFIG_FILE}: {err}"
            ) from err
        if missing or unexpected:
            raise ValueError(
                f"{weights}: does not match {directory / CONFIG_FILE}; missing "
                f"{sorted(missing) or 'none'}, unexpected {sorted(unexpected) or 'none'}"
            )
        return model.to(target).eval()


def torch_load_safe(path: str | Path, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU: tensors and plain data only
    (dicts, lists, numbers, strings), so loading a file runs none of its code. ``mmap``:
    map the tensors' storage instead of reading it (for looking at shapes only), where the
    file's format allows (the zip format ``torch.save`` writes; others are read).

    Raises:
        ValueError: the file holds other objects (pickled classes or functions), or is not a
            readable torch file; the message names the path.
    """
    try:
        mmap = mmap and zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        text = str(err).partition("WeightsUnpickler error:")[2] or str(err)
        detail = " ".join(text.split("Check the documentation")[0].split())
        if "Unsupported global" not in detail:  # not a pickle at all: a text file, ...
            raise ValueError(f"{path}: not a file written by torch.save") from err
        raise ValueError(
            f"{path}: refused: it holds objects other than tensors and plain data, which "
            f"loading would have to run as code ({detail.split(' was not')[0]}). Load it with "
            "torch.load(..., weights_only=False) yourself only if you trust where it comes from."
        ) from err
    except EOFError as err:
        raise ValueError(f"{path}: not a readable torch file (empty or cut short)") from err
    except (KeyError, IndexError, TypeError, AttributeError) as err:  # the unpickler on junk
        raise ValueError(f"{path}: not a file written by torch.save") from err
    except RuntimeError as err:
        raise ValueError(f"{path}: not a readable torch file ({err})") from err


def model_classes() -> dict[str, type[Pretrained]]:
    """``{model_type: class}`` of every model that saves to a folder."""
    from ttt_video.models.lm import LanguageModel
    from ttt_video.models.video import VideoModel

    return {cls.model_type: cls for cls in (LanguageModel, VideoModel)}


def read_pretrained_config(directory: Path) -> tuple[type[Pretrained], Any]:
    """The model class and config saved in a ``save_pretrained`` folder.

    Raises:
        FileNotFoundError: ``directory`` or its ``config.json`` is missing.
        ValueError: ``config.json`` is not JSON, names an unknown ``model_type``, has unknown
            fields or values the config rejects (the message names the file).
    """
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such folder (expected a save_pretrained folder)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {directory} is not a save_pretrained folder")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    classes = model_classes()
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type not in classes:
        raise ValueError(
            f"{path}: model_type {model_type!r} is not one of {', '.join(map(repr, classes))}"
        )
    cls = classes[model_type]
    values = {k: v for k, v in data.items() if k not in _META_KEYS}
    known = {f.name for f in fields(cls.config_class)}
    if unknown := sorted(set(values) - known):
        raise ValueError(
            f"{path}: unknown {cls.config_class.__name__} fields {unknown} (written by "
            f"ttt_video {data.get('ttt_video_version')}, this is {__version__})"
        )
    try:
        return cls, cls.config_class(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err


def load_pretrained(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model of a ``save_pretrained`` folder, whatever its type (``LanguageModel`` or
    ``VideoModel``), in eval mode on ``device``; errors as ``Pretrained.from_pretrained``."""
    model_cls, _ = read_pretrained_config(Path(directory))
    return model_cls.from_pretrained(directory, device)
