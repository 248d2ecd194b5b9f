"""Flakiness and duration trends."""

from __future__ import annotations

import math

import pytest

from vmrunner.learning.flaky import is_flaky, summarise_flaky, trend

FLAKY = [((2, 1), True), ((5, 0), False), ((5, 5), False), ((1, 1), False), ((3, 2), True)]


@pytest.mark.parametrize(("counts", "expected"), FLAKY)
def test_is_flaky(counts: tuple[int, int], expected: bool) -> None:
    assert is_flaky(*counts) is expected


def test_summary() -> None:
    s = summarise_flaky("pytest", [(4, 3), (2, 2), (2, 1), (3, 0)])
    assert s is not None
    assert (s.flaky_commits, s.runs_on_flaky_commits) == (2, 6)
    assert s.flip_rate == pytest.approx(2 / 6)
    assert summarise_flaky("make", [(3, 3), (2, 0)]) is None


TRENDS = [
    ([1.0] * 10 + [2.0] * 10, "slower"),
    ([2.0] * 10 + [1.0] * 10, "faster"),
    ([1.0, 1.1] * 10, "stable"),
    ([1.0] * 9, "unknown"),
]


@pytest.mark.parametrize(("durations", "direction"), TRENDS)
def test_trend(durations: list[float], direction: str) -> None:
    assert trend(durations).direction == direction


def test_trend_values() -> None:
    t = trend([1.0] * 10 + [1.5] * 10)
    assert (t.earlier_mean_s, t.recent_mean_s, t.change) == pytest.approx((1.0, 1.5, 0.5))
    assert math.isnan(trend([]).change)
