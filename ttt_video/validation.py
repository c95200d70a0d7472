"""Checks shared by every config and argument check: positive numbers, and the hint for an
unknown field name.

Messages start with the field name (``"batch_size: expected > 0, got 0"``), which is what
``ttt_video.train.config.from_dict`` needs to report the dotted field of a run file.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping


def unknown_field_hint(key: str, names: list[str]) -> str:
    """What to say after "no field ``key``": the close names in ``names``, else all of them."""
    close = difflib.get_close_matches(key, names, n=3)
    return f"did you mean {' or '.join(close)}?" if close else f"valid fields: {', '.join(names)}"


def check_positive(
    values: object, *names: str, integer: bool = False, allow_none: bool = False
) -> None:
    """Raise ``ValueError`` naming the first of ``names`` whose value is not > 0.

    Args:
        values: an object whose attributes are checked (a dataclass in ``__post_init__``), or a
            mapping ``{name: value}`` for plain arguments (all its keys when ``names`` is empty).
        names: the attributes or keys to check.
        integer: also require an ``int`` ("expected a positive int").
        allow_none: let ``None`` pass (an optional setting).

    Bools are rejected (``True > 0`` is no positive count).
    """
    if isinstance(values, Mapping):
        items = [(n, values[n]) for n in names or values]
    else:
        items = [(n, getattr(values, n)) for n in names]
    for name, value in items:
        if value is None and allow_none:
            continue
        kind = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
            what = "a positive int" if integer else "> 0"
            raise ValueError(
                f"{name}: expected {what}{' or null' if allow_none else ''}, got {value!r}"
            )
