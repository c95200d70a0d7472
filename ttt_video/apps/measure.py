"""Measurements the benchmarks share: wall times and saved memory (the machine's matmul
reference is ``ttt_video.train.peak_flops.measure_peak_flops``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def best_of(fn: Callable[[], object], repeats: int = 3, warmup: bool = False) -> float:
    """Fastest wall time of ``repeats`` calls of ``fn``, seconds (after one uncounted call when
    ``warmup``)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def saved_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the tensors autograd saves for the backward while ``fn()`` runs (each storage
    once): the activation memory of a training step."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())
