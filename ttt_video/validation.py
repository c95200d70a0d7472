"""The one check of positive numbers, shared by every config and argument check.

Messages start with the field name (``"batch_size: expected > 0, got 0"``), which is what
``ttt_video.train.config.from_dict`` needs to report the dotted field of a run file.
"""

from __future__ import annotations

from collections.abc import Mapping


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
