"""Webhook deliveries, kept the moment they arrive and before they are acknowledged.

A delivery is keyed by GitHub's ``X-GitHub-Delivery`` id (a redelivery keeps the same
id), so a copy that arrives again is counted and changes nothing else. The processing
side reads deliveries with status ``received``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from vmrunner.store.engine import Store
from vmrunner.store.models import deliveries

STATUSES = ("received", "ignored", "processed", "error")


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
            stmt = make(deliveries).values(**values).on_conflict_do_nothing(index_elements=["id"])
            if conn.execute(stmt).rowcount == 1:
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
