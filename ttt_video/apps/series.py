"""Bounded summaries of per-frame values of any-length streams, for the demos' plots and metrics.

Letters: V values per row, n bins in use (at most the capacity).
"""

from __future__ import annotations

import numpy as np


class BinnedSeries:
    """Means of rows of ``V`` values over consecutive bins of equal width, in at most ``capacity``
    bins, whatever the number of rows: memory ``O(capacity V)``.

    Rows fill bins of ``width`` rows (1 at first); when every bin is full, neighbouring bins are
    merged in pairs and ``width`` doubles, so the bins always cover the rows seen so far
    evenly (the last bin may be part-filled). The first value of a row is typically its
    position (a frame index), so ``means()[:, 0]`` gives the bins' positions for a plot.

    Args:
        num_values: ``V``.
        capacity: most bins kept (even, >= 2).
    """

    def __init__(self, num_values: int, capacity: int = 1024):
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity: expected an even number >= 2, got {capacity}")
        self.capacity, self.width, self.rows = capacity, 1, 0
        self.sums = np.zeros((capacity, num_values))
        self.counts = np.zeros(capacity, dtype=np.int64)

    def add(self, *values: float) -> None:
        """Add one row of ``V`` values."""
        k = self.rows // self.width
        if k == self.capacity:
            half = self.capacity // 2
            self.sums[:half] = self.sums[0::2] + self.sums[1::2]
            self.counts[:half] = self.counts[0::2] + self.counts[1::2]
            self.sums[half:], self.counts[half:] = 0.0, 0
            self.width *= 2
            k = half
        self.sums[k] += values
        self.counts[k] += 1
        self.rows += 1

    def means(self) -> np.ndarray:
        """``[n, V]``: the mean of each bin in use, in order."""
        used = self.counts > 0
        return self.sums[used] / self.counts[used, None]

    def total_mean(self) -> np.ndarray:
        """``[V]``: the mean of every row added (NaN before the first)."""
        if not self.rows:
            return np.full(self.sums.shape[1], np.nan)
        return self.sums.sum(axis=0) / self.rows
