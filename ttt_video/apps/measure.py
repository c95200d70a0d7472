"""Measurements the benchmarks share: wall times and saved memory (the machine's matmul
reference is ``ttt_video.train.peak_flops.measure_peak_flops``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from ttt_video.validation import check_positive


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


def median_time(fn: Callable[[], object], calls: int, warmup: int = 5) -> float:
    """Median wall time of ``calls >= 1`` calls of ``fn``, seconds, after ``warmup`` uncounted
    ones: for calls of a millisecond or less, where one slow call (a page fault, another
    process) moves a best-of-few or a mean."""
    check_positive({"calls": calls}, integer=True)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
