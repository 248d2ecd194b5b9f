"""Which cache entry a restore gets, and which entries eviction removes (pure).

GitHub's rules (docs: "Matching a cache key"), for a restore with ``key``, ``restore_keys``
and a ``version`` (the client's hash of the paths and compression): only entries of
that exact version count; the refs the job may read are searched in order (its own
branch, then a pull request's base, then the default branch), and within each ref:

1. an entry whose key equals ``key``;
2. else the newest entry whose key starts with ``key``;
3. else, for each restore key in order: an exact match, else the newest entry whose key
   starts with it.

Eviction is least-recently-used: when the entries pass the size limit, those last used
longest ago go first (ties: the older entry, then the lower id) until the rest fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One saved (finalized) cache entry."""

    id: int
    key: str
    version: str
    scope: str
    size: int
    created_at: float
    last_used: float


def _newest(entries: Iterable[Entry]) -> Entry | None:
    return max(entries, key=lambda e: (e.created_at, e.id), default=None)


def _lookup(entries: Sequence[Entry], wanted: str) -> Entry | None:
    exact = _newest(e for e in entries if e.key == wanted)
    return exact or _newest(e for e in entries if e.key.startswith(wanted))


def match(
    entries: Iterable[Entry], key: str, restore_keys: Sequence[str], version: str,
    scopes: Sequence[str],
) -> Entry | None:  # fmt: skip
    """The entry a restore of ``key`` (then ``restore_keys``) at ``version`` gets from
    the refs ``scopes`` (searched in order), or None."""
    usable = [e for e in entries if e.version == version]
    for scope in scopes:
        here = [e for e in usable if e.scope == scope]
        for wanted in (key, *restore_keys):
            found = _lookup(here, wanted) if wanted else None
            if found is not None:
                return found
    return None


def evict(entries: Iterable[Entry], limit: int) -> list[Entry]:
    """The entries to remove, least recently used first, so that the others' total size
    is at most ``limit``."""
    order = sorted(entries, key=lambda e: (e.last_used, e.created_at, e.id))
    total = sum(e.size for e in order)
    removed: list[Entry] = []
    for entry in order:
        if total <= limit:
            break
        removed.append(entry)
        total -= entry.size
    return removed
