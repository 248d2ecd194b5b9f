"""Webhook deliveries, kept the moment they arrive and before they are acknowledged.

A delivery is keyed by GitHub's ``X-GitHub-Delivery`` id (a redelivery keeps the same
id), so a copy that arrives again is counted and changes nothing else. The processing
side reads deliveries with status ``received``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from vmrunner.store.engine import Store
from vmrunner.store.models import deliveries
from vmrunner.store.owner import owner_alive, this_host, this_owner

STATUSES = ("received", "processing", "ignored", "processed", "error")
STALE_PROCESSING_S = 600.0
"""A delivery ``processing`` this long by a process of another host is taken over."""


@dataclass(frozen=True)
class Delivery:
    """One kept delivery (the payload is the raw JSON text, as signed)."""

    id: str
    event: str
    action: str | None
    repo: str | None
    received_at: float
    copies: int
    status: str
    note: str
    payload: str


class DeliveryStore:
    """The deliveries of one database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(
        self, delivery_id: str, event: str, payload: str, *, action: str | None = None,
        repo: str | None = None, status: str = "received", note: str = "",
    ) -> bool:  # fmt: skip
        """Keep a delivery (committed when this returns); False when a delivery with this
        id was kept before (its copy count goes up, nothing else changes)."""
        values = {"id": delivery_id, "event": event, "action": action, "repo": repo,
                  "received_at": time.time(), "status": status, "note": note, "payload": payload}  # fmt: skip
        make = pg_insert if self.store.dialect == "postgresql" else sqlite_insert

        def write(conn: Connection) -> bool:
            stmt = (make(deliveries).values(**values).on_conflict_do_nothing(index_elements=["id"])
                    .returning(deliveries.c.id))  # fmt: skip
            if conn.execute(stmt).first() is not None:  # (rowcount is -1 here on PostgreSQL)
                return True
            conn.execute(update(deliveries).where(deliveries.c.id == delivery_id)
                         .values(copies=deliveries.c.copies + 1))  # fmt: skip
            return False

        return self.store.write(write)

    def get(self, delivery_id: str) -> Delivery | None:
        with self.store.read() as conn:
            row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
        return Delivery(**row._mapping) if row is not None else None

    def with_status(self, status: str, limit: int = 100) -> list[Delivery]:
        """Deliveries with ``status``, oldest first."""
        query = (select(deliveries).where(deliveries.c.status == status)
                 .order_by(deliveries.c.received_at).limit(limit))  # fmt: skip
        with self.store.read() as conn:
            return [Delivery(**row._mapping) for row in conn.execute(query)]

    def count(self) -> int:
        with self.store.read() as conn:
            return len(conn.execute(select(deliveries.c.id)).all())

    def set_status(self, delivery_id: str, status: str, note: str = "") -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown delivery status {status!r}")
        self.store.write(lambda c: c.execute(
            update(deliveries).where(deliveries.c.id == delivery_id).values(status=status, note=note)
        ))  # fmt: skip

    def claim(self, limit: int = 20) -> list[Delivery]:
        """Take up to ``limit`` ``received`` deliveries, oldest first, for this process to
        process: they become ``processing`` (the note says by whom). On PostgreSQL several
        servers claim at once without taking one delivery twice (``SKIP LOCKED``)."""
        mark = f"{this_host()} {this_owner()}"

        def write(conn: Connection) -> list[Delivery]:
            query = (select(deliveries.c.id).where(deliveries.c.status == "received")
                     .order_by(deliveries.c.received_at).limit(limit))  # fmt: skip
            if self.store.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = [row[0] for row in conn.execute(query)]
            if not ids:
                return []
            conn.execute(update(deliveries).where(deliveries.c.id.in_(ids))
                         .values(status="processing", note=mark))  # fmt: skip
            rows = conn.execute(select(deliveries).where(deliveries.c.id.in_(ids))
                                .order_by(deliveries.c.received_at))  # fmt: skip
            return [Delivery(**row._mapping) for row in rows]

        return self.store.write(write)

    def reclaim(self, now: float | None = None) -> list[str]:
        """Put deliveries back to ``received`` whose processing process is gone: on this
        host, a process no longer running; elsewhere, one processing for over
        :data:`STALE_PROCESSING_S`. Their ids."""
        now = time.time() if now is None else now
        with self.store.read() as conn:
            rows = conn.execute(
                select(deliveries.c.id, deliveries.c.note, deliveries.c.received_at)
                .where(deliveries.c.status == "processing")
            ).all()  # fmt: skip
        stale = []
        for delivery_id, note, received in rows:
            host, _, owner = note.partition(" ")
            if (host == this_host() and not owner_alive(owner)) or (
                host != this_host() and now - received > STALE_PROCESSING_S
            ):
                stale.append(delivery_id)
        if stale:
            self.store.write(lambda c: c.execute(
                update(deliveries)
                .where(and_(deliveries.c.id.in_(stale), deliveries.c.status == "processing"))
                .values(status="received", note="")
            ))  # fmt: skip
        return stale
