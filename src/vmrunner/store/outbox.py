"""The outbox: reports for GitHub, kept in the store until GitHub has taken them.

A row is ``pending`` until sent (``sent``, with what GitHub answered in ``result``) or
given up (``dead``, with the error). Rows with one ``key`` go out strictly in id order:
a row is due only when its ``next_at`` has passed and no earlier row of its key is
still pending, so a ``pending`` status never lands after the ``success`` made later.

``claim`` hands due rows to one sender and pushes their ``next_at`` a lease ahead in
the same transaction (``SKIP LOCKED`` on PostgreSQL), so two senders never send one row
at once; a sender that dies leaves its rows due again when the lease runs out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update
from sqlalchemy.sql import Select

from vmrunner.store.engine import Store
from vmrunner.store.models import outbox

LEASE_S = 60.0
"""How long a claimed row is left to its sender before another may take it."""


@dataclass(frozen=True)
class OutboxRow:
    """One report: ``body`` and ``result`` are parsed JSON."""

    id: int
    kind: str
    repo: str
    sha: str
    key: str
    body: dict[str, Any]
    state: str
    attempts: int
    next_at: float
    last_error: str
    result: dict[str, Any] | None
    created_at: float
    sent_at: float | None


def _row(mapping: Any) -> OutboxRow:
    data = dict(mapping)
    data["body"] = json.loads(data["body"])
    data["result"] = json.loads(data["result"]) if data["result"] else None
    return OutboxRow(**data)


class Outbox:
    """The outbox of one store. Reports are anything with ``kind``, ``repo``, ``sha``,
    ``key`` and ``body`` attributes (``vmrunner.github.reports.Report``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, reports: Iterable[Any], now: float | None = None) -> list[int]:
        """Keep ``reports`` in one transaction, in order; their row ids."""
        now = time.time() if now is None else now
        values = [{"kind": r.kind, "repo": r.repo, "sha": r.sha, "key": r.key,
                   "body": json.dumps(r.body, sort_keys=True), "state": "pending",
                   "attempts": 0, "next_at": now, "created_at": now} for r in reports]  # fmt: skip

        def write(conn: Connection) -> list[int]:
            ids = []
            for v in values:
                key = conn.execute(insert(outbox).values(**v)).inserted_primary_key
                ids.append(int(key[0]) if key else 0)
            return ids

        return self.store.write(write) if values else []

    def _due_query(self, now: float, limit: int) -> Select[Any]:
        earlier = outbox.alias("earlier")
        blocked = (
            select(earlier.c.id)
            .where(
                and_(
                    earlier.c.key == outbox.c.key,
                    earlier.c.state == "pending",
                    earlier.c.id < outbox.c.id,
                )
            )  # fmt: skip
            .exists()
        )
        return (
            select(outbox)
            .where(and_(outbox.c.state == "pending", outbox.c.next_at <= now, ~blocked))
            .order_by(outbox.c.id)
            .limit(limit)
        )

    def due(self, now: float, limit: int = 100) -> list[OutboxRow]:
        """Pending rows whose ``next_at`` has passed and that have no earlier pending row
        of the same key, oldest first. Reads only; see :meth:`claim` to send them."""
        with self.store.read() as conn:
            return [_row(r._mapping) for r in conn.execute(self._due_query(now, limit))]

    def claim(self, now: float, limit: int = 50, lease_s: float = LEASE_S) -> list[OutboxRow]:
        """:meth:`due` rows, taken for sending: their ``next_at`` moves to ``now +
        lease_s`` in the same transaction. The rows are returned as they were."""

        def write(conn: Connection) -> list[OutboxRow]:
            query = self._due_query(now, limit)
            if self.store.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True, of=outbox)
            rows = [_row(r._mapping) for r in conn.execute(query)]
            if rows:
                conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows]))
                             .values(next_at=now + lease_s))  # fmt: skip
            return rows

        return self.store.write(write)

    def _set(self, row_id: int, **values: Any) -> None:
        self.store.write(lambda c: c.execute(
            update(outbox).where(and_(outbox.c.id == row_id, outbox.c.state == "pending"))
            .values(**values)
        ))  # fmt: skip

    def mark_sent(
        self, row_id: int, result: Mapping[str, Any] | None, now: float | None = None
    ) -> None:
        """GitHub took row ``row_id``; ``result`` is what later reports need (an id)."""
        self._set(row_id, state="sent", sent_at=time.time() if now is None else now,
                  result=json.dumps(dict(result)) if result is not None else None,
                  attempts=outbox.c.attempts + 1)  # fmt: skip

    def retry(self, row_id: int, error: str, next_at: float) -> None:
        """An attempt failed in a way that may pass later: try again at ``next_at``."""
        self._set(row_id, last_error=error[:2000], next_at=next_at, attempts=outbox.c.attempts + 1)

    def postpone(self, row_ids: Iterable[int], next_at: float) -> None:
        """Move claimed rows back to ``next_at`` without counting an attempt (a rate
        limit hit another row of the batch)."""
        ids = list(row_ids)
        if ids:
            self.store.write(lambda c: c.execute(
                update(outbox).where(and_(outbox.c.id.in_(ids), outbox.c.state == "pending"))
                .values(next_at=next_at)
            ))  # fmt: skip

    def dead(self, row_id: int, error: str) -> None:
        """Give row ``row_id`` up (GitHub refused it for good); later rows of its key go on."""
        self._set(row_id, state="dead", last_error=error[:2000], attempts=outbox.c.attempts + 1)

    def result_of(self, key: str) -> dict[str, Any] | None:
        """The ``result`` of the newest sent row of ``key`` that has one (a check run's id)."""
        query = (select(outbox.c.result)
                 .where(and_(outbox.c.key == key, outbox.c.state == "sent", outbox.c.result.is_not(None)))
                 .order_by(outbox.c.id.desc()).limit(1))  # fmt: skip
        with self.store.read() as conn:
            found = conn.execute(query).scalar()
        return json.loads(found) if found else None

    def rows(self, key: str | None = None) -> list[OutboxRow]:
        """Every row (of ``key``), in id order."""
        query = select(outbox).order_by(outbox.c.id)
        if key is not None:
            query = query.where(outbox.c.key == key)
        with self.store.read() as conn:
            return [_row(r._mapping) for r in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        """Rows per state: ``{"pending": n, "sent": n, "dead": n}`` (zeros included)."""
        query = select(outbox.c.state, func.count()).group_by(outbox.c.state)
        with self.store.read() as conn:
            found = {state: int(n) for state, n in conn.execute(query)}
        return {state: found.get(state, 0) for state in ("pending", "sent", "dead")}

    def next_due_at(self) -> float | None:
        """The earliest ``next_at`` of a pending row (when the sender has work next)."""
        with self.store.read() as conn:
            value = conn.execute(select(func.min(outbox.c.next_at))
                                 .where(outbox.c.state == "pending")).scalar()  # fmt: skip
        return float(value) if value is not None else None
