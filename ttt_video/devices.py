"""Device names as users write them (``--device auto|cpu|cuda|cuda:N``) -> ``torch.device``."""

from __future__ import annotations

import re

import torch

DEVICE_SPECS = "'auto', 'cpu', 'cuda' or 'cuda:N'"
_SPEC = re.compile(r"auto|cpu|cuda(:\d+)?")


def resolve_device(spec: str | torch.device) -> torch.device:
    """The device named by ``spec``: ``"auto"`` (CUDA when available, else the CPU),
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; a ``torch.device`` is checked the same way.

    Raises:
        ValueError: ``spec`` is none of these, or names a CUDA device this machine lacks.
    """
    text = str(spec).strip().lower()
    if not _SPEC.fullmatch(text):
        raise ValueError(f"device: unknown {spec!r}; expected {DEVICE_SPECS}")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device: {spec!r} asked for, but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use 'cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device: {spec!r} asked for, but this machine has {count} GPU(s)")
    return device
