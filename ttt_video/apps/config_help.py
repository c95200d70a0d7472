"""``ttt-video fit --help [SECTION]``: every field of a resolved run, with its value and meaning.

The meanings are the attribute docstrings of the config dataclasses
(:func:`ttt_video.train.config.field_docs`), so the help never drifts from the code.
"""

from __future__ import annotations

import dataclasses
import textwrap

from ttt_video.train.config import RunConfig, field_docs

WIDTH = 96


def _rows(obj: object, prefix: str) -> list[tuple[str, str, str]]:
    """``(dotted name, value, doc)`` for every field of dataclass ``obj``, nested ones flattened."""
    rows = []
    docs = field_docs(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            rows.extend(_rows(value, name + "."))
        else:
            rows.append((name, repr(value) if isinstance(value, str) else str(value), docs[f.name]))
    return rows


def _section(title: str, rows: list[tuple[str, str, str]]) -> str:
    lines = [title]
    for name, value, doc in rows:
        lines.append(f"  --{name} {value}")
        if doc:
            lines.extend(
                textwrap.wrap(doc, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6)
            )
    return "\n".join(lines)


def describe_run(run: RunConfig, section: str = "all", from_file: bool = True) -> str:
    """The fields of ``run`` grouped by section (``all``, ``top``, ``model``, ``data``,
    ``optim`` or ``trainer``), each with its value and docstring."""
    where = "value in this config" if from_file else f"default of task {run.task!r}"
    top = [
        r for r in _rows(run, "") if r[0].split(".")[0] not in ("model", "data", "optim", "trainer")
    ]
    parts = {
        "top": ("run", top),
        "model": (f"model ({type(run.model).__name__})", _rows(run.model, "model.")),
        "data": (f"data ({type(run.data).__name__})", _rows(run.data, "data.")),
        "optim": ("optim", _rows(run.optim, "optim.")),
        "trainer": ("trainer", _rows(run.trainer, "trainer.")),
    }
    chosen = list(parts) if section == "all" else [section]
    body = "\n\n".join(_section(f"{parts[s][0]}:", parts[s][1]) for s in chosen)
    note = "model.preset names a registered preset (ttt-video list models) whose fields the others override."
    return f"Config fields (--section.field VALUE; shown: {where}):\n\n{body}\n\n{note}"
