"""The one positive-number check (``ttt_video.validation.check_positive``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ttt_video.validation import check_positive


@dataclass
class Fields:
    count: int = 1
    rate: float = 0.5
    window: int | None = None


def test_attributes_and_mappings_are_checked_by_name():
    check_positive(Fields(), "count", "rate")
    check_positive(Fields(), "window", allow_none=True)
    check_positive({"block_len": 4}, integer=True)
    with pytest.raises(ValueError, match=r"^rate: expected > 0, got 0.0$"):
        check_positive(Fields(rate=0.0), "count", "rate")
    with pytest.raises(ValueError, match=r"^count: expected a positive int, got 2.5$"):
        check_positive({"count": 2.5}, integer=True)
    with pytest.raises(ValueError, match=r"^window: expected > 0 or null, got -1$"):
        check_positive(Fields(window=-1), "window", allow_none=True)
    for bad in (None, True, "3"):
        with pytest.raises(ValueError, match="^count: "):
            check_positive({"count": bad})
