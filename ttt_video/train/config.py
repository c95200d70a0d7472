"""Typed configuration of a training run, filled from YAML with command-line overrides.

A run file (``configs/<family>/<name>.yaml``) has six top-level keys::

    task: lm                 # a name in ttt_video.train.tasks (which builds module + data)
    name: ttt_linear_debug   # run folder name (default: the YAML file's stem)
    out_dir: runs            # parent of the run folder
    model: {...}             # validated by the task's own model parser
    data: {...}              # validated by the task's own data parser
    optim: {...}             # OptimConfig (shared by every task)
    trainer: {...}           # TrainerConfig (shared by every task)

``model`` and ``data`` belong to the task: :func:`ttt_video.train.tasks.load_run_config` reads the YAML, applies
the overrides (``--trainer.max_steps 50`` sets ``trainer.max_steps``; values are parsed as
YAML, so ``4``, ``1e-3``, ``true``, ``[0.9, 0.95]`` and ``null`` work), then converts the
``model``/``data`` mappings with the parsers the task registered. Every error is a
:class:`ConfigError` naming the file and the dotted field (and the command-line flag that
set it, when one did). :func:`resolved_dict` gives the fully resolved run as plain data;
the runner saves it as ``config.yaml`` in the run folder, and that file loads back to the
same run.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ttt_video.validation import unknown_field_hint

PRECISIONS = ("32", "bf16-mixed")
STRATEGIES = ("auto", "ddp", "fsdp")
LOGGERS = ("csv", "tensorboard", "wandb", "mlflow")


class ConfigError(ValueError):
    """An invalid run configuration; the message names the file and the field."""


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay (ttt_video/kernels/README.md section 9, the paper's recipe)."""

    lr: float = 3e-3
    """Peak learning rate."""
    min_lr: float = 1e-5
    """Learning rate at the end of the cosine."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.1
    """Decoupled weight decay on matrices (not on norms, biases or embeddings)."""
    warmup_fraction: float = 0.1
    """Fraction of the schedule spent in the linear warm-up from 0 to ``lr``."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this value (None: no clipping)."""
    schedule_steps: int | None = None
    """Length of the schedule in optimiser steps (None: ``trainer.max_steps``). Set it to
    stop a run early on the schedule of a longer one (resume then continues it)."""
    ttt_base_lr_start: float | None = None
    """Warm every TTT layer's inner ``base_lr`` linearly from this value to its configured
    value over the outer warm-up (the paper uses 0.01 -> 0.1 for TTT-MLP; None: no warm-up)."""

    def __post_init__(self) -> None:
        for name in ("lr", "eps"):
            _check(name, getattr(self, name) > 0, "expected > 0")
        _check("min_lr", 0 <= self.min_lr <= self.lr, "expected 0 <= min_lr <= lr")
        _check(
            "betas",
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "two values in [0, 1)",
        )
        _check("weight_decay", self.weight_decay >= 0, "expected >= 0")
        _check("warmup_fraction", 0 <= self.warmup_fraction < 1, "expected in [0, 1)")
        _check("grad_clip", self.grad_clip is None or self.grad_clip > 0, "expected > 0 or null")
        _check(
            "schedule_steps",
            self.schedule_steps is None or self.schedule_steps > 0,
            "expected > 0 or null",
        )
        _check(
            "ttt_base_lr_start",
            self.ttt_base_lr_start is None or self.ttt_base_lr_start > 0,
            "expected > 0 or null",
        )
        self.betas = tuple(self.betas)


@dataclass
class TrainerConfig:
    """Devices, precision, length, logging and checkpointing of a run (Lightning underneath).

    Step counts (``max_steps``, ``val_check_interval``, ``checkpoint_every``, ``log_every``)
    are optimiser steps; with accumulation one step is several micro-batches.
    """

    accelerator: str = "auto"
    """``"auto"``, ``"cpu"`` or ``"gpu"``."""
    devices: int | str = 1
    """Devices per node: a count, or ``"auto"`` (every visible GPU, else one CPU process)."""
    num_nodes: int = 1
    """Number of machines."""
    strategy: str = "auto"
    """``"auto"``, ``"ddp"`` or ``"fsdp"`` (PyTorch's ``fully_shard``, one shard unit per
    residual Block, on GPUs or CPUs; its checkpoints are folders)."""
    precision: str = "32"
    """``"32"`` or ``"bf16-mixed"``."""
    max_steps: int = 100
    """Optimiser steps to train for."""
    val_check_interval: int = 50
    """Validate every this many optimiser steps (and at the end)."""
    limit_val_batches: int | None = None
    """Validation batches per device per check (None: the whole validation split)."""
    accumulate_grad_batches: int = 1
    """Micro-batches per optimiser step (ignored when ``tokens_per_step`` is set)."""
    tokens_per_step: int | None = None
    """Target tokens per optimiser step over all devices; sets the accumulation, which must
    come out a whole number (``tokens_per_step / (micro-batch tokens * world size)``)."""
    gradient_checkpointing: bool = False
    """Recompute each block in the backward pass (less memory, ~1/3 more compute)."""
    log_every: int = 10
    """Log training metrics every this many optimiser steps."""
    checkpoint_every: int | None = None
    """Write ``last.ckpt`` every this many optimiser steps (None: at each validation)."""
    seed: int = 0
    """Seed of the model initialisation and the data order."""
    peak_flops: float | None = None
    """Peak FLOP/s of one device for the MFU metric (None: the datasheet's dense peak of a
    known GPU in the run's matmul dtype, else measured with a matmul at start)."""
    progress_bar: bool = True
    """Show a progress bar."""
    logger: list[str] | str = field(default_factory=lambda: ["tensorboard"])
    """Where metrics go: one name or a list of ``"csv"``, ``"tensorboard"``, ``"wandb"``,
    ``"mlflow"`` (wandb and mlflow when their package is installed). The CSV log is always
    written (the run folder's ``report.md`` is drawn from it); ``csv`` alone: only it."""

    def __post_init__(self) -> None:
        self.logger = [self.logger] if isinstance(self.logger, str) else list(self.logger)
        unknown = [name for name in self.logger if name not in LOGGERS]
        _check("logger", not unknown, f"unknown {unknown}; expected any of {', '.join(LOGGERS)}")
        _check("strategy", self.strategy in STRATEGIES, f"expected one of {', '.join(STRATEGIES)}")
        _check(
            "precision", self.precision in PRECISIONS, f"expected one of {', '.join(PRECISIONS)}"
        )
        _check(
            "devices",
            self.devices == "auto" or (isinstance(self.devices, int) and self.devices > 0),
            "a positive count or 'auto'",
        )
        for name in (
            "num_nodes",
            "max_steps",
            "val_check_interval",
            "accumulate_grad_batches",
            "log_every",
        ):
            _check(name, getattr(self, name) > 0, "expected > 0")
        for name in ("limit_val_batches", "tokens_per_step", "checkpoint_every", "peak_flops"):
            _check(
                name, getattr(self, name) is None or getattr(self, name) > 0, "expected > 0 or null"
            )


@dataclass
class RunConfig:
    """A whole run: which task, where it writes, and the four sections (see module docstring)."""

    task: str = "lm"
    """Task name (``ttt_video.train.tasks.list_tasks()``)."""
    name: str | None = None
    """Run folder name; None: the YAML file's stem."""
    out_dir: str = "runs"
    """Parent folder of run folders."""
    model: Any = field(default_factory=dict)
    """The task's model configuration (a mapping in YAML, the task's dataclass once resolved)."""
    data: Any = field(default_factory=dict)
    """The task's data configuration (likewise)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and schedule."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Devices, length, logging."""

    @property
    def run_dir(self) -> Path:
        """``out_dir / name``."""
        return Path(self.out_dir) / str(self.name)


LIGHTNING_NAMES = {
    "default_root_dir": "out_dir (top level) and name",
    "log_every_n_steps": "trainer.log_every",
    "gradient_clip_val": "optim.grad_clip",
    "check_val_every_n_epoch": "trainer.val_check_interval (in optimiser steps)",
    "max_epochs": "trainer.max_steps",
    "ckpt_path": "--resume (fit) or --ckpt (validate)",
    "every_n_train_steps": "trainer.checkpoint_every",
}
"""Lightning ``Trainer`` argument names and the field that does the same thing here."""


def _field_hint(key: str, names: list[str]) -> str:
    """The tail of an unknown-field error: our name for a Lightning one, close names, or all."""
    if key in LIGHTNING_NAMES:
        return f"; Lightning's {key} is {LIGHTNING_NAMES[key]} here"
    return f"; {unknown_field_hint(key, names)}"


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of dataclass ``cls`` (the string under each field), by name.

    Read from the source, as documentation tools do; fields without one map to ``""``, and
    inherited fields take their docs from the class that defines them.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}


def _check(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"{name}: {what}")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """``value`` checked against the annotation ``tp`` (ints widen to floats; nested dataclasses)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(option, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a valid {_type_name(tp)}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null")
        return None
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return origin(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            value = _float_text(value, where)  # YAML 1.1 reads `3e-3` (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads `precision: 32` as a number
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp!r}")


def _float_text(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError as err:
        raise ConfigError(f"{where}: expected a number, got {text!r}") from err


def _type_name(tp: Any) -> str:
    return " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(tp)) or str(tp)


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking names and types.

    Raises ``ConfigError`` naming ``where.<field>`` for an unknown field, a value of the
    wrong type, or a value the dataclass's own validation rejects (its ``ValueError`` must
    start with the field name, as ``"width: ..."``).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}.{key}: unknown field{_field_hint(key, names)}")
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ConfigError(f"{where}.{err}") from err


def plain(obj: Any) -> Any:
    """Dataclasses, tuples and paths turned into YAML-safe dicts, lists and strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--trainer.max_steps", "50", "--model.mixer=attention"]`` -> ``{"trainer.max_steps": 50, ...}``.

    Values are parsed as YAML scalars/lists. Raises ``ConfigError`` on a flag without a value
    or an argument that is not a ``--dotted.name``.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"command line: expected --section.field VALUE, got {arg!r}")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"command line: --{key} needs a value")
            value = args[i + 1]
            i += 1
        out[key] = yaml.safe_load(value) if value != "" else ""
        i += 1
    return out


def set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--{key}: {'.'.join(parts[: depth + 1])} is not a section")
        node = child
    node[parts[-1]] = value


CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
"""The run files shipped with the package (``configs/`` in the repository)."""


def list_configs() -> dict[str, Path]:
    """Shipped run files by name (``ttt_linear_debug``, ``mmnist_ttt_linear``, ...)."""
    return {p.stem: p for p in sorted(CONFIGS_DIR.glob("*/*.yaml"))}


def config_path(spec: str | Path) -> Path:
    """The run file for ``spec``: an existing path, or the name of a shipped config.

    ``ttt_linear_debug``, ``lm/ttt_linear_debug`` and ``configs/lm/ttt_linear_debug.yaml``
    all name the shipped file, so a wheel install needs no repository checkout.
    ``ConfigError`` lists close names when nothing matches.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    shipped = list_configs()
    name = path.name.removesuffix(".yaml")
    if name in shipped:
        return shipped[name]
    close = difflib.get_close_matches(name, list(shipped), n=4)
    hint = (
        f"; did you mean {', '.join(close)}?" if close else "; `ttt-video list configs` lists them"
    )
    raise ConfigError(f"{spec}: config file not found (not a path nor a shipped config name){hint}")


def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file (a path or a shipped config name, see :func:`config_path`);
    ``ConfigError`` naming the file when missing or malformed."""
    path = config_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def resolved_dict(run: RunConfig) -> dict:
    """The resolved run as plain data (what ``config.yaml`` in the run folder holds)."""
    return plain(run)


def dump_yaml(data: dict) -> str:
    """YAML text of a plain mapping, keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
