"""The benchmarks' shared timers."""

from __future__ import annotations

import itertools

import pytest

from ttt_video.apps import measure


def test_median_time_is_the_median_of_the_counted_calls(monkeypatch):
    # perf_counter is read at the start and the end of every counted call: durations 5, 1, 9
    clock = iter([0.0, 5.0, 10.0, 11.0, 20.0, 29.0])
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(clock))
    calls = itertools.count()
    assert measure.median_time(lambda: next(calls), calls=3, warmup=2) == 5.0
    assert next(calls) == 5  # two uncounted warm-up calls, then the three timed ones


def test_median_time_of_an_even_count_is_the_mean_of_the_middle_two(monkeypatch):
    clock = iter([0.0, 4.0, 10.0, 11.0, 20.0, 29.0, 30.0, 32.0])  # durations 4, 1, 9, 2
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(clock))
    assert measure.median_time(lambda: None, calls=4, warmup=0) == 3.0


def test_median_time_needs_a_call():
    with pytest.raises(ValueError, match="calls"):
        measure.median_time(lambda: None, calls=0)
