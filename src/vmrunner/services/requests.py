"""Typed requests for the queries on kept runs, validated once, here (every edge calls
these instead of checking choices itself)."""

from __future__ import annotations

from vmrunner.errors import ConfigError
from vmrunner.results.envelope import ACTIVE_STATUSES, KINDS, RUN_STATUSES
from vmrunner.store.runs import RunFilter


def run_filter(
    *, kind: str | None = None, status: str | None = None, repo: str | None = None,
    branch: str | None = None, host: str | None = None, limit: int = 20, before: int | None = None,
) -> RunFilter:  # fmt: skip
    """A filter for listing runs; raises ``ConfigError`` naming the bad value."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    statuses = (*ACTIVE_STATUSES, *RUN_STATUSES)
    if status is not None and status not in statuses:
        raise ConfigError(f"--status must be one of {', '.join(statuses)}, got {status!r}")
    if not 1 <= limit <= 1000:
        raise ConfigError(f"--limit must be between 1 and 1000, got {limit}")
    return RunFilter(kind, status, repo, branch, host, limit, before)
