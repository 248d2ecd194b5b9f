"""Prediction rules: smoothing toward the parent, back-off, intervals, Brier."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.learning.predict import LevelCounts, brier, predict, prior_rate, wilson


def chain(*levels: tuple[str, int, int]) -> list[LevelCounts]:
    return [LevelCounts(name, name, n, ok) for name, n, ok in levels]


BACKOFF = [
    # (levels most specific first, expected level used)
    (
        [("repo+after", 20, 19), ("repo", 40, 30), ("global", 90, 80), ("family", 100, 90)],
        "repo+after",
    ),
    ([("repo+after", 2, 2), ("repo", 40, 30), ("global", 90, 80), ("family", 100, 90)], "repo"),
    ([("repo+after", 0, 0), ("repo", 3, 3), ("global", 90, 80), ("family", 100, 90)], "global"),
    ([("repo", 0, 0), ("global", 0, 0), ("family", 50, 10)], "family"),
    ([("global", 2, 0), ("family", 3, 1)], "global"),  # thin everywhere: most specific with data
    ([("global", 0, 0), ("family", 0, 0)], "prior"),
]


@pytest.mark.parametrize(("levels", "expected"), BACKOFF)
def test_backoff_picks_the_most_specific_level_with_support(
    levels: list[tuple[str, int, int]], expected: str
) -> None:
    chosen, estimates = predict(chain(*levels), 1000, 900, min_support=5)
    assert chosen.level == expected
    assert [e.level for e in estimates] == [lv[0] for lv in levels]


SMOOTHING = [
    # (n, successes, parent rate, strength, expected)
    (0, 0, 0.8, 4.0, 0.8),  # no data: the parent's estimate
    (2, 2, 0.5, 4.0, (2 + 2.0) / 6),  # two passes are not certainty
    (100, 50, 0.9, 4.0, (50 + 3.6) / 104),  # plenty of data: close to the observed rate
    (10, 0, 0.9, 4.0, 3.6 / 14),
]


@pytest.mark.parametrize(("n", "ok", "parent", "strength", "expected"), SMOOTHING)
def test_smoothing_toward_the_parent(
    n: int, ok: int, parent: float, strength: float, expected: float
) -> None:
    total, total_ok = 1_000_000, round(parent * 1_000_000)
    chosen, _ = predict(chain(("global", n, ok)), total, total_ok, strength=strength, min_support=0)
    assert chosen.probability == pytest.approx(expected, abs=1e-4)


def test_never_only_one_or_a_half() -> None:
    seen = {
        round(predict(chain(("global", n, ok), ("family", 50, 40)), 500, 400)[0].probability, 4)
        for n in range(0, 12)
        for ok in range(0, n + 1)
    }
    assert 1.0 not in seen
    assert len(seen) > 20


def test_prior_with_no_data_at_all() -> None:
    chosen, _ = predict(chain(("global", 0, 0)), 0, 0)
    assert chosen.level == "prior"
    assert chosen.probability == 0.5
    assert prior_rate(10, 9) == pytest.approx(10 / 12)


WILSON = [
    (0.5, 100, (0.4038, 0.5962)),
    (0.0, 10, (0.0, 0.2775)),
    (1.0, 10, (0.7225, 1.0)),
    (0.5, 0, (0.0, 1.0)),
]


@pytest.mark.parametrize(("p", "n", "expected"), WILSON)
def test_wilson_interval(p: float, n: float, expected: tuple[float, float]) -> None:
    low, high = wilson(p, n)
    assert (low, high) == pytest.approx(expected, abs=1e-3)


@given(st.integers(0, 500), st.integers(0, 500), st.integers(0, 1000), st.integers(0, 1000))
def test_estimate_in_interval(n: int, ok: int, fam_n: int, fam_ok: int) -> None:
    ok, fam_ok = min(ok, n), min(fam_ok, fam_n)
    chosen, _ = predict(chain(("global", n, ok), ("family", fam_n, fam_ok)), 2000, 1500)
    assert 0.0 < chosen.probability < 1.0
    assert chosen.low <= chosen.probability <= chosen.high


def test_brier() -> None:
    assert brier([(1.0, True), (0.0, False)]) == 0.0
    assert brier([(0.5, True), (0.5, False)]) == 0.25
    assert math.isnan(brier([]))
