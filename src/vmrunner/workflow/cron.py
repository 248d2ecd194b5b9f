"""Cron syntax as GitHub accepts it in ``on.schedule`` (five fields: minute, hour, day
of month, month, day of week; ``*``, numbers, names of months and days, ``a-b``, ``a/n``
and lists). A port of the rule in GitHub's workflow parser; pure."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


@dataclass(frozen=True)
class _Range:
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)


_FIELDS = (_Range(0, 59), _Range(0, 23), _Range(1, 31), _Range(1, 12, MONTHS), _Range(0, 6, DAYS))
INVALID_CRON = (
    "Invalid cron expression. Expected format: '* * * * *' (minute hour day month weekday)"
)


def _number(text: str, names: dict[str, int]) -> float:
    """JavaScript's ``+text`` (blank is 0, junk is NaN), or the named value."""
    if text.lower() in names:
        return names[text.lower()]
    if not text.strip():
        return 0.0
    try:
        return float(text)
    except ValueError:
        return math.nan


def _part(value: str, rng: _Range, separators: bool = True) -> bool:
    """Whether one field is valid (``separators``: lists, steps and ranges allowed)."""
    if value.lower() in rng.names or value == "*":
        return True
    if "," in value:
        return separators and all(v and _part(v, rng) for v in value.split(","))
    if "/" in value:
        start, _, step = value.partition("/")
        n = _number(step, {})
        if not separators or "/" in step or not start or not step or not n > 0:
            return False
        return _part(start, rng) and _part(step, rng, False)
    if "-" in value:
        start, _, end = value.partition("-")
        if not separators or "-" in end or not start or not end:
            return False
        ok = _part(start, rng, False) and _part(end, rng, False)
        return ok and _number(end, rng.names) >= _number(start, rng.names)
    return rng.low <= _number(value, {}) <= rng.high


def is_valid_cron(cron: str) -> bool:
    """Whether GitHub accepts ``cron`` (fields separated by runs of spaces)."""
    parts = re.split(r" +", cron)
    return len(parts) == 5 and all(_part(p, r) for p, r in zip(parts, _FIELDS, strict=True))
