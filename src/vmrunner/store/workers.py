"""The registry of workers sharing one queue: who is there, how much they take, whether
they are draining, and when they last heart-beat (for ``vmrunner status`` and metrics).

The registry is informational: a worker's claims are protected by their leases, not by
its row here, so removing a stale row never takes work from anyone.
"""

from __future__ import annotations

import builtins
import os
import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update

from vmrunner.procs import proc_start_ticks
from vmrunner.store.engine import Store
from vmrunner.store.models import workers as w
from vmrunner.store.owner import this_host


def worker_id() -> str:
    """This process's worker id: ``host:pid:start-ticks`` (distinct across hosts, and
    across pid reuse on one host)."""
    pid = os.getpid()
    return f"{this_host()}:{pid}:{proc_start_ticks(pid) or 0}"


@dataclass(frozen=True)
class WorkerRecord:
    """One registered worker."""

    id: str
    host: str
    capacity: int
    running: int
    draining: bool
    started_at: float
    heartbeat_at: float


class Workers:
    """The workers of one database. Every method is one short transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, worker_id: str, host: str, capacity: int) -> None:
        """Enter (or re-enter, fresh) ``worker_id``: running nothing, not draining."""
        now = time.time()

        def write(conn: Connection) -> None:
            conn.execute(delete(w).where(w.c.id == worker_id))
            conn.execute(insert(w).values(id=worker_id, host=host, capacity=capacity, running=0,
                                          draining=False, started_at=now, heartbeat_at=now))  # fmt: skip

        self.store.write(write)

    def heartbeat(self, worker_id: str, running: int, draining: bool = False) -> bool:
        """Record that ``worker_id`` is alive, running ``running`` items; False when it is
        not registered (e.g. removed as stale): the caller registers again."""
        values = {"running": running, "draining": draining, "heartbeat_at": time.time()}
        done = self.store.write(
            lambda c: c.execute(update(w).where(w.c.id == worker_id).values(**values)).rowcount
        )
        return bool(done == 1)

    def remove(self, worker_id: str) -> None:
        """``worker_id`` left (idempotent)."""
        self.store.write(lambda c: c.execute(delete(w).where(w.c.id == worker_id)))

    def list(self) -> list[WorkerRecord]:
        """Every registered worker, by id."""
        with self.store.read() as conn:
            rows = conn.execute(select(w).order_by(w.c.id)).all()
        return [WorkerRecord(**{**row._mapping, "draining": bool(row.draining)}) for row in rows]

    def remove_stale(self, older_than_s: float, now: float | None = None) -> builtins.list[str]:
        """Remove the workers whose last heartbeat is more than ``older_than_s`` seconds
        before ``now``; their ids. Does not touch their queue items (leases do that)."""
        cutoff = (time.time() if now is None else now) - older_than_s

        def write(conn: Connection) -> builtins.list[str]:
            ids = [str(r[0]) for r in conn.execute(
                select(w.c.id).where(w.c.heartbeat_at < cutoff).order_by(w.c.id))]  # fmt: skip
            if ids:
                conn.execute(delete(w).where(w.c.id.in_(ids), w.c.heartbeat_at < cutoff))
            return ids

        return self.store.write(write)
