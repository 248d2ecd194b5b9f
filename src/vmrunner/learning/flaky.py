"""Flakiness and duration trends: rules over plain counts.

**Flaky.** A command is flaky on a commit when, on that same commit (and
repository), it both passed and failed: the code did not change, the outcome did.
A command's flakiness across commits is summarised by how many commits were flaky
and its *flip rate*: the share of its runs on those commits that went the
minority way.

**Trend.** The mean duration of a command's most recent runs compared with the
runs before them: ``slower`` or ``faster`` when the change exceeds
``threshold`` (default 20 %), else ``stable``; ``unknown`` with fewer than
``2 * min_samples`` runs. Pure: durations arrive in time order from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vmrunner.learning.jsonable import JsonMixin


def is_flaky(runs: int, successes: int) -> bool:
    """True when, on one commit, a command both passed and failed."""
    return 0 < successes < runs


@dataclass(frozen=True)
class FlakySummary(JsonMixin):
    """A command's flakiness: commits where it flipped, and the share of minority outcomes."""

    command: str
    flaky_commits: int
    runs_on_flaky_commits: int
    flip_rate: float


def summarise_flaky(command: str, per_commit: Iterable[tuple[int, int]]) -> FlakySummary | None:
    """Summary over ``(runs, successes)`` per commit, or ``None`` when no commit was flaky."""
    commits = runs = minority = 0
    for n, ok in per_commit:
        if is_flaky(n, ok):
            commits += 1
            runs += n
            minority += min(ok, n - ok)
    if not commits:
        return None
    return FlakySummary(command, commits, runs, minority / runs)


@dataclass(frozen=True)
class Trend(JsonMixin):
    """Mean duration before and recently, relative change and its label."""

    earlier_mean_s: float
    recent_mean_s: float
    change: float
    direction: str


def trend(durations: Sequence[float], *, min_samples: int = 5, threshold: float = 0.2) -> Trend:
    """Compare the recent half (at most 50 runs) of ``durations`` (oldest first) with the rest."""
    nan = float("nan")
    if len(durations) < 2 * min_samples:
        return Trend(nan, nan, nan, "unknown")
    half = min(len(durations) // 2, 50)
    recent = durations[-half:]
    earlier = durations[-2 * half : -half]
    e_mean = sum(earlier) / len(earlier)
    r_mean = sum(recent) / len(recent)
    change = (r_mean - e_mean) / e_mean if e_mean > 0 else 0.0
    direction = "slower" if change > threshold else "faster" if change < -threshold else "stable"
    return Trend(e_mean, r_mean, change, direction)
