"""Success prediction: hierarchical smoothing with back-off, and a Wilson interval.

The context levels form a chain from the most specific to the broadest::

    repo+after  (repository and previous command)   only with --repo and --after
    after       (previous command, any repository)  only with --after and no --repo
    repo        (this command in this repository)   only with --repo
    global      (this command everywhere)
    family      (the command's family, e.g. ``python3 -c``)
    prior       (every command ever recorded)

Each level's estimate is shrunk toward its parent's, as a Beta prior worth
``strength`` pseudo-observations::

    p(level) = (successes + strength * p(parent)) / (n + strength)

and the prior is the overall success rate with a uniform Beta(1, 1) prior. So a
command seen twice, both times passing, gets a probability between its family's and
1.0, never 1.0 itself; a new command gets its family's. The level *used* is the
most specific one with at least ``min_support`` observations (else the most
specific with any, else the prior). The interval is Wilson's score interval around
the estimate with ``n + strength`` effective observations.

Pure: the caller passes the counts; nothing here reads a database or a clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class LevelCounts:
    """Observed counts at one context level (``level`` names it, ``key`` says for what)."""

    level: str
    key: str
    n: int
    successes: int


@dataclass(frozen=True)
class Estimate:
    """The smoothed probability at one level and the interval around it."""

    level: str
    key: str
    probability: float
    n: int
    low: float
    high: float


def wilson(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` over ``n`` trials; ``(0, 1)`` for n <= 0."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def prior_rate(total: int, successes: int) -> float:
    """The overall success rate under a Beta(1, 1) prior (0.5 with no data at all)."""
    return (successes + 1.0) / (total + 2.0)


def smooth_chain(chain: Sequence[LevelCounts], prior: float, strength: float) -> list[Estimate]:
    """Estimates for every level of ``chain`` (most specific first), each shrunk to its parent."""
    estimates: list[Estimate] = []
    parent = prior
    for lv in reversed(chain):
        p = (lv.successes + strength * parent) / (lv.n + strength)
        low, high = wilson(p, lv.n + strength)
        estimates.append(Estimate(lv.level, lv.key, p, lv.n, low, high))
        parent = p
    estimates.reverse()
    return estimates


def choose(estimates: Sequence[Estimate], min_support: int) -> Estimate | None:
    """The most specific estimate with ``min_support`` observations, else with any, else None."""
    for est in estimates:
        if est.n >= min_support:
            return est
    for est in estimates:
        if est.n > 0:
            return est
    return None


def predict(
    chain: Sequence[LevelCounts],
    total: int,
    total_successes: int,
    *,
    strength: float = 4.0,
    min_support: int = 5,
) -> tuple[Estimate, list[Estimate]]:
    """The chosen estimate and all estimates, for ``chain`` and the overall totals.

    With no data at any level the chosen estimate is the ``prior`` level, whose
    ``n`` is the total number of observations.
    """
    prior = prior_rate(total, total_successes)
    estimates = smooth_chain(chain, prior, strength)
    chosen = choose(estimates, min_support)
    if chosen is None:
        low, high = wilson(prior, total + 2.0)
        chosen = Estimate("prior", "*", prior, total, low, high)
    return chosen, estimates


def brier(pairs: Sequence[tuple[float, bool]]) -> float:
    """Mean squared error of probabilities against outcomes (0 is perfect); NaN if empty."""
    if not pairs:
        return math.nan
    return sum((p - (1.0 if y else 0.0)) ** 2 for p, y in pairs) / len(pairs)
