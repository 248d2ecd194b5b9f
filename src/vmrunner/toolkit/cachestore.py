"""The cache entries ``actions/cache`` saves, kept under ``<cache dir>/toolkit-cache``.

Shared by every run on the host (each run's service opens it), so every operation takes
an ``fcntl`` lock on ``index.lock`` and rewrites ``index.json`` atomically. An entry is
reserved (``pending``), its archive uploaded to ``blobs/<id>``, then finalized; entries
are immutable (a key, version and scope saved once stays). Finalizing evicts the least
recently used entries past the size limit (:func:`.matching.evict`). Entries belong to a
repository and a ref (their scope); :func:`.matching.match` picks what a restore gets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmrunner.toolkit import matching

DEFAULT_LIMIT = 10 * 1024**3  # GitHub's 10 GB per repository
PENDING_TTL = 3600.0  # a reservation never finalized is dropped after this long


class CacheRefused(Exception):
    """A save the store refuses (the client logs ``message`` and goes on)."""


@dataclass(frozen=True)
class Record:
    """An entry as kept: the matching fields plus its repository and state."""

    entry: matching.Entry
    repo: str
    ready: bool


def _load(data: dict[str, Any]) -> list[Record]:
    return [
        Record(matching.Entry(**r["entry"]), r["repo"], r["ready"]) for r in data.get("entries", [])
    ]


class CacheStore:
    """The host's cache entries for the repository ``repo``, within ``limit`` bytes."""

    def __init__(self, root: Path, repo: str, limit: int = DEFAULT_LIMIT) -> None:
        self.root, self.repo, self.limit = root, repo, limit
        (root / "blobs").mkdir(parents=True, exist_ok=True)

    def blob(self, entry_id: int) -> Path:
        return self.root / "blobs" / str(entry_id)

    def staging(self, entry_id: int) -> Path:
        return self.root / "blobs" / f".blocks-{entry_id}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[tuple[dict[str, Any], list[Record]]]:
        with (self.root / "index.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads((self.root / "index.json").read_text())
            except (OSError, ValueError):
                data = {"next_id": 1, "entries": []}
            records = _load(data)
            yield data, records
            data["entries"] = [dataclasses.asdict(r) for r in records]
            tmp = self.root / ".index.json.tmp"
            tmp.write_text(json.dumps(data))
            tmp.replace(self.root / "index.json")

    def reserve(self, key: str, version: str, scope: str) -> int:
        """Reserve an entry for ``key``/``version`` in ``scope``; its id. Raises
        :class:`CacheRefused` when one exists (saved, or being saved by another job)."""
        now = time.time()
        with self._locked() as (data, records):
            self._drop_stale(records, now)
            for r in records:
                e = r.entry
                if (r.repo, e.key, e.version, e.scope) == (self.repo, key, version, scope):
                    state = "already exists" if r.ready else "is being saved by another job"
                    raise CacheRefused(f"a cache entry for key '{key}' {state}")
            entry_id = int(data["next_id"])
            data["next_id"] = entry_id + 1
            records.append(
                Record(matching.Entry(entry_id, key, version, scope, 0, now, now), self.repo, False)
            )
            return entry_id

    def _drop_stale(self, records: list[Record], now: float) -> None:
        for r in [r for r in records if not r.ready and now - r.entry.created_at > PENDING_TTL]:
            records.remove(r)
            self.blob(r.entry.id).unlink(missing_ok=True)

    def pending(self, entry_id: int) -> bool:
        """Whether ``entry_id`` is a reservation waiting for its upload."""
        with self._locked() as (_, records):
            return any(r.entry.id == entry_id and not r.ready for r in records)

    def finalize(self, key: str, version: str, scope: str, size: int) -> int:
        """Mark the reserved entry saved (its archive must be ``size`` bytes); evicts the
        least recently used entries past the limit. Returns the entry's id."""
        with self._locked() as (_, records):
            r = next((r for r in records if not r.ready and r.repo == self.repo
                      and (r.entry.key, r.entry.version, r.entry.scope) == (key, version, scope)), None)  # fmt: skip
            if r is None or not self.blob(r.entry.id).is_file():
                raise CacheRefused(f"no upload in progress for key '{key}'")
            actual = self.blob(r.entry.id).stat().st_size
            if actual != size:
                raise CacheRefused(f"the archive has {actual} bytes, not the {size} announced")
            now = time.time()
            done = Record(
                dataclasses.replace(r.entry, size=actual, created_at=now, last_used=now),
                r.repo,
                True,
            )
            records[records.index(r)] = done
            self._evict(records)
            return done.entry.id

    def _evict(self, records: list[Record]) -> None:
        ready = [r.entry for r in records if r.ready]
        for gone in matching.evict(ready, self.limit):
            records[:] = [r for r in records if r.entry.id != gone.id]
            self.blob(gone.id).unlink(missing_ok=True)

    def lookup(
        self, key: str, restore_keys: Sequence[str], version: str, scopes: Sequence[str]
    ) -> matching.Entry | None:
        """The entry a restore gets (GitHub's rules), marked as used now; or None."""
        with self._locked() as (_, records):
            mine = [r.entry for r in records if r.ready and r.repo == self.repo]
            found = matching.match(mine, key, restore_keys, version, scopes)
            if found is not None:
                i = next(i for i, r in enumerate(records) if r.entry.id == found.id)
                records[i] = dataclasses.replace(
                    records[i], entry=dataclasses.replace(found, last_used=time.time())
                )
            return found

    def entries(self) -> list[matching.Entry]:
        """Every saved entry of every repository."""
        with self._locked() as (_, records):
            return [r.entry for r in records if r.ready]
