"""``concurrency`` groups in the store, shared by every process and host on one database.

The rules are the pure state machine of :mod:`vmrunner.workflow.concurrency` (one
running and the newest pending per group; an older pending run is cancelled; with
``cancel-in-progress`` the running one too). Here each group is a row, each run in a
group a *holder* row that remembers who owns it and whether it was cancelled; every
change is one write transaction (``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL an
advisory transaction lock serialises them). A holder whose process died on this host is
finished on its behalf the next time anyone on this host looks, so a crash never
blocks a group for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Connection, delete, insert, select, text, update

from vmrunner.store.engine import Store
from vmrunner.store.models import concurrency_groups as groups_t
from vmrunner.store.models import concurrency_holders as holders_t
from vmrunner.store.owner import owner_alive, this_host, this_owner
from vmrunner.workflow.concurrency import ConcurrencyState, Group, admit, finish, group_key

Slot = Literal["running", "pending", "cancelled"]
T = TypeVar("T")
_PG_LOCK_KEY = 0x766D7263  # "vmrc": serialises concurrency changes on PostgreSQL


def _load(conn: Connection, key: str) -> ConcurrencyState:
    row = conn.execute(select(groups_t).where(groups_t.c.name == key)).first()
    if row is None:
        return ConcurrencyState()
    group = Group(row.running, row.pending, bool(row.cancelling))
    return ConcurrencyState(MappingProxyType({key: group}))


def _save(conn: Connection, key: str, state: ConcurrencyState) -> None:
    conn.execute(delete(groups_t).where(groups_t.c.name == key))
    group = state.group(key)
    if group is not None:
        conn.execute(insert(groups_t).values(name=key, running=group.running,
                                             pending=group.pending, cancelling=group.cancelling))  # fmt: skip


def _finish_everywhere(conn: Connection, holder: str) -> None:
    """``holder`` is gone: free its slot in every group it is in."""
    rows = conn.execute(
        select(groups_t.c.name).where(
            (groups_t.c.running == holder) | (groups_t.c.pending == holder)
        )
    ).all()
    for (key,) in rows:
        state, _ = finish(_load(conn, key), key, holder)
        _save(conn, key, state)


class ConcurrencyStore:
    """The concurrency groups of one database. Holder ids must be unique per run (the
    run id, with a suffix for job-level groups)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _write(self, fn: Callable[[Connection], T]) -> T:
        def body(conn: Connection) -> T:
            if self.store.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            self._reap(conn)
            return fn(conn)

        return self.store.write(body)

    @staticmethod
    def _reap(conn: Connection) -> None:
        rows = conn.execute(
            select(holders_t.c.holder, holders_t.c.owner).where(holders_t.c.host == this_host())
        ).all()
        for holder, owner in rows:
            if not owner_alive(owner):
                _finish_everywhere(conn, holder)
                conn.execute(delete(holders_t).where(holders_t.c.holder == holder))

    def admit(self, group: str, holder: str, cancel_in_progress: bool) -> Slot:
        """Enter ``holder`` into ``group``; cancels what GitHub would (the older pending
        run, and the running one with ``cancel_in_progress``)."""
        key = group_key(group)

        def body(conn: Connection) -> Slot:
            state, decision = admit(_load(conn, key), key, holder, cancel_in_progress)
            _save(conn, key, state)
            conn.execute(delete(holders_t).where(holders_t.c.holder == holder))
            conn.execute(
                insert(holders_t).values(holder=holder, host=this_host(), owner=this_owner())
            )
            if decision.cancelled:
                conn.execute(update(holders_t).where(holders_t.c.holder.in_(decision.cancelled))
                             .values(cancelled=True))  # fmt: skip
            return "running" if decision.start_now else "pending"

        return self._write(body)

    def slot(self, group: str, holder: str) -> Slot:
        """Where ``holder`` stands in ``group`` now."""
        key = group_key(group)

        def body(conn: Connection) -> Slot:
            flag = conn.execute(
                select(holders_t.c.cancelled).where(holders_t.c.holder == holder)
            ).scalar()
            current = _load(conn, key).group(key)
            if flag or current is None:
                return "cancelled"
            if current.running == holder:
                return "running"
            return "pending" if current.pending == holder else "cancelled"

        return self._write(body)

    def is_cancelled(self, holder: str) -> bool:
        with self.store.read() as conn:
            flag = conn.execute(
                select(holders_t.c.cancelled).where(holders_t.c.holder == holder)
            ).scalar()
        return bool(flag)

    def release(self, group: str, holder: str) -> None:
        """``holder`` finished (or gave up waiting): frees its slot, promoting a pending run."""
        key = group_key(group)

        def body(conn: Connection) -> None:
            state, _ = finish(_load(conn, key), key, holder)
            _save(conn, key, state)
            conn.execute(delete(holders_t).where(holders_t.c.holder == holder))

        self._write(body)

    def groups(self) -> dict[str, Group]:
        """Every busy group (folded name to its slots)."""
        with self.store.read() as conn:
            rows = conn.execute(select(groups_t)).all()
        return {r.name: Group(r.running, r.pending, bool(r.cancelling)) for r in rows}

    async def wait_turn(self, group: str, holder: str, poll: float = 0.25) -> bool:
        """Wait until ``holder`` runs in ``group``: True, or False when it was cancelled
        while pending (its slot is then released)."""
        while True:
            slot = await asyncio.to_thread(self.slot, group, holder)
            if slot == "running":
                return True
            if slot == "cancelled":
                await asyncio.to_thread(self.release, group, holder)
                return False
            await asyncio.sleep(poll)


@dataclass(frozen=True)
class GroupOutcome(Generic[T]):
    """How a run in a concurrency group ended: ``value`` when it ran to the end;
    ``cancelled`` "pending" (a newer run replaced it before it started) or "running"
    (cancel-in-progress cancelled it)."""

    value: T | None = None
    cancelled: Literal["pending", "running"] | None = None


async def run_in_group(
    store: ConcurrencyStore,
    group: str,
    holder: str,
    cancel_in_progress: bool,
    body: Callable[[], Awaitable[T]],
    *,
    on_pending: Callable[[], None] | None = None,
) -> GroupOutcome[T]:
    """Admit ``holder`` to ``group``, wait for its turn, run ``body`` and release the
    slot, however it ends. While ``body`` runs, a newer run's cancel-in-progress
    cancels it (``body`` sees ``CancelledError``). ``on_pending`` is called when the
    run has to wait. Ctrl-C (cancelling the caller) propagates, after the release."""
    try:
        slot = await asyncio.to_thread(store.admit, group, holder, cancel_in_progress)
        if slot == "pending" and on_pending is not None:
            on_pending()
        if not await store.wait_turn(group, holder):
            return GroupOutcome(cancelled="pending")
        task = asyncio.ensure_future(body())
        watcher = asyncio.ensure_future(_watch(store, holder, task))
        try:
            return GroupOutcome(value=await task)
        except asyncio.CancelledError:
            if not watcher.done() or watcher.cancelled():
                raise
            return GroupOutcome(cancelled="running")
        finally:
            watcher.cancel()
    finally:
        await asyncio.shield(asyncio.to_thread(store.release, group, holder))


async def _watch(store: ConcurrencyStore, holder: str, task: asyncio.Future[Any]) -> None:
    while not task.done():
        if await asyncio.to_thread(store.is_cancelled, holder):
            task.cancel()
            return
        await asyncio.sleep(0.5)
