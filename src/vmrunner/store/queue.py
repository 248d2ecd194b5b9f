"""The shared queue of triggered workflow runs, in SQL: every server and worker on one
database takes work from it, with no other coordinator.

An item is one triggered workflow run (its run row is kept by the caller). States:
``pending`` -> ``claimed`` -> ``done`` | ``cancelled`` | ``lost``; a claimed item whose
lease passed goes back to ``pending`` (requeued) or ends ``lost``.

Concurrency groups (GitHub's rules, names folded case-insensitively): per group at most
one claimed item; enqueuing cancels every older *pending* item of the group (superseded);
with ``cancel_in_progress`` the claimed one is to be stopped too (its run's
``cancel_requested`` is set in the same transaction; the worker running it cancels it).
A requeued item keeps its place (oldest first), so after a requeue a group can hold two
pending items until one is claimed or a newer one supersedes both.

Claims: the oldest pending item of each group that has no claimed item, oldest groups
first. Each claim bumps the item's *fence*; ``renew`` and ``finish`` only act while the
fence still matches, so a worker that lost its lease (stalled, presumed dead) cannot
finish an item that was requeued and claimed by someone else.

Serialisation. SQLite: every write is one ``BEGIN IMMEDIATE`` transaction (one host).
PostgreSQL: candidate rows are locked ``FOR UPDATE SKIP LOCKED``, and every change of a
group's membership (enqueue, claim, expire) holds that group's advisory transaction lock
(a claim only *tries* it and skips a busy group), re-reading the group after taking it;
so no two claimed items of one group exist, with any number of claimers. ``enqueue``,
a freeing ``finish`` and a requeue ``NOTIFY`` channel :data:`CHANNEL` (sent at commit);
:class:`Waker` listens for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, exists, func, insert, select, text, update
from sqlalchemy.sql import Select

from vmrunner.store.engine import Store
from vmrunner.store.models import queue as q
from vmrunner.store.models import runs as runs_t
from vmrunner.store.waker import CHANNEL, Waker
from vmrunner.workflow.concurrency import group_key

log = logging.getLogger(__name__)
__all__ = ["Enqueued", "Expired", "ItemSpec", "Queue", "QueueItem", "Waker"]
STATES = ("pending", "claimed", "done", "cancelled", "lost")
FINAL = ("done", "cancelled", "lost")
_LOCK_SPACE = 0x766D7271  # "vmrq": (space, hashtext(group)) advisory locks of queue groups


@dataclass(frozen=True)
class ItemSpec:
    """What the scheduler enqueues: one triggered workflow run (its run row exists)."""

    run_id: str
    repo: str
    sha: str
    ref: str
    branch: str | None
    workflow: str
    workflow_name: str
    event: str
    payload: Mapping[str, Any]
    group: str
    cancel_in_progress: bool = False
    delivery_id: str | None = None


@dataclass(frozen=True)
class QueueItem:
    """One queue row; ``payload`` decoded, ``group`` the folded group name."""

    id: int
    run_id: str
    delivery_id: str | None
    repo: str
    sha: str
    ref: str
    branch: str | None
    workflow: str
    workflow_name: str
    event: str
    payload: Mapping[str, Any]
    group: str
    cancel_in_progress: bool
    state: str
    fence: int
    lease_owner: str | None
    lease_until: float | None
    attempts: int
    note: str
    created_at: float
    claimed_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class Enqueued:
    """The new item; the older pending items of its group it cancelled (``superseded``);
    the claimed items of its group to stop (``cancel_in_progress``; their runs'
    ``cancel_requested`` is set already)."""

    item: QueueItem
    superseded: list[QueueItem]
    to_stop: list[QueueItem]


@dataclass(frozen=True)
class Expired:
    """Claimed items whose lease passed: back to ``pending`` or ended ``lost``."""

    requeued: list[QueueItem]
    lost: list[QueueItem]


def _item(row: Row[Any]) -> QueueItem:
    m = dict(row._mapping)
    m["run_id"] = str(m["run_id"])
    m["payload"] = json.loads(m["payload"])
    m["group"] = m.pop("group_name")
    m["cancel_in_progress"] = bool(m["cancel_in_progress"])
    return QueueItem(**m)


def _fetch(conn: Connection, ids: Sequence[int]) -> list[QueueItem]:
    rows = conn.execute(select(q).where(q.c.id.in_(list(ids))).order_by(q.c.id))
    return [_item(row) for row in rows]


def _ids(conn: Connection, query: Select[Any]) -> list[int]:
    return [int(row[0]) for row in conn.execute(query)]


def _run_key(run_id: str) -> int | None:
    return int(run_id) if str(run_id).isdigit() else None


def _in_group(group: str, state: str) -> Select[Any]:
    return select(q.c.id).where(q.c.group_name == group, q.c.state == state).order_by(q.c.id)


class Queue:
    """The queue of one database (see the module's docstring). Every method is one short
    transaction; database failures raise ``StoreError``."""

    def __init__(self, store: Store, lease_s: float = 30.0) -> None:
        self.store = store
        self.lease_s = lease_s
        self._pg = store.dialect == "postgresql"

    # -- PostgreSQL helpers ----------------------------------------------------------------
    def _lock_group(self, conn: Connection, group: str) -> None:
        if self._pg:
            conn.execute(text("SELECT pg_advisory_xact_lock(:s, hashtext(:g))"),
                         {"s": _LOCK_SPACE, "g": group})  # fmt: skip

    def _try_lock_group(self, conn: Connection, group: str) -> bool:
        if not self._pg:
            return True
        got = conn.execute(text("SELECT pg_try_advisory_xact_lock(:s, hashtext(:g))"),
                           {"s": _LOCK_SPACE, "g": group}).scalar()  # fmt: skip
        return bool(got)

    def _notify(self, conn: Connection, what: str) -> None:
        if self._pg:
            conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": what})

    # -- writes ----------------------------------------------------------------------------
    def enqueue(self, spec: ItemSpec) -> Enqueued:
        """Add ``spec`` as a pending item of its (folded) group, superseding the group's
        older pending items and, with ``cancel_in_progress``, asking its claimed one to stop."""
        key = group_key(spec.group)
        run_key = _run_key(spec.run_id)
        if run_key is None:
            raise KeyError(spec.run_id)
        values = {
            "run_id": run_key, "delivery_id": spec.delivery_id, "repo": spec.repo, "sha": spec.sha,
            "ref": spec.ref, "branch": spec.branch, "workflow": spec.workflow,
            "workflow_name": spec.workflow_name, "event": spec.event,
            "payload": json.dumps(dict(spec.payload)), "group_name": key,
            "cancel_in_progress": spec.cancel_in_progress, "state": "pending",
        }  # fmt: skip

        def write(conn: Connection) -> Enqueued:
            now = time.time()
            self._lock_group(conn, key)
            old = self._supersede(conn, key, spec.run_id, now)
            stop = self._request_stop(conn, key, spec.run_id) if spec.cancel_in_progress else []
            new = conn.execute(insert(q).values(**values, created_at=now)).inserted_primary_key
            assert new is not None
            self._notify(conn, str(new[0]))
            return Enqueued(_fetch(conn, [int(new[0])])[0], old, stop)

        return self.store.write(write)

    @staticmethod
    def _supersede(conn: Connection, group: str, by: str, now: float) -> list[QueueItem]:
        """Cancel the pending items of ``group``; them."""
        ids, note = _ids(conn, _in_group(group, "pending")), f"superseded by run {by}"
        if ids:
            conn.execute(update(q).where(q.c.id.in_(ids), q.c.state == "pending")
                         .values(state="cancelled", finished_at=now, note=note))  # fmt: skip
        return [i for i in _fetch(conn, ids) if i.state == "cancelled" and i.note == note]

    @staticmethod
    def _request_stop(conn: Connection, group: str, by: str) -> list[QueueItem]:
        """Flag the runs of ``group``'s claimed items to cancel; those items."""
        ids = _ids(conn, _in_group(group, "claimed"))
        if not ids:
            return []
        conn.execute(update(q).where(q.c.id.in_(ids), q.c.state == "claimed")
                     .values(note=f"cancel-in-progress by run {by}"))  # fmt: skip
        stopping = [i for i in _fetch(conn, ids) if i.state == "claimed"]
        run_ids = [int(i.run_id) for i in stopping]
        conn.execute(update(runs_t).where(runs_t.c.id.in_(run_ids),
                                          runs_t.c.status.in_(("queued", "running")))
                     .values(cancel_requested=True))  # fmt: skip
        return stopping

    def _candidates(self, limit: int) -> Select[Any]:
        busy, older = q.alias("busy"), q.alias("older")
        query = (
            select(q.c.id, q.c.group_name)
            .where(q.c.state == "pending",
                   ~exists().where(busy.c.group_name == q.c.group_name, busy.c.state == "claimed"),
                   ~exists().where(older.c.group_name == q.c.group_name,
                                   older.c.state == "pending", older.c.id < q.c.id))
            .order_by(q.c.id).limit(limit)
        )  # fmt: skip
        return query.with_for_update(skip_locked=True, of=q) if self._pg else query

    def _claimable(self, conn: Connection, item_id: int, group: str) -> bool:
        """Under the group's lock, re-read: no claimed item, and ``item_id`` its oldest pending."""
        if not self._try_lock_group(conn, group):
            return False
        claimed = conn.execute(_in_group(group, "claimed").limit(1)).first()
        first = conn.execute(_in_group(group, "pending").limit(1)).scalar()
        return claimed is None and first == item_id

    def claim(self, worker: str, limit: int = 1) -> list[QueueItem]:
        """Claim up to ``limit`` items for ``worker`` (at most one per group, oldest first):
        each becomes ``claimed`` with its fence bumped, a lease of ``lease_s`` and one more
        attempt. Several processes and hosts may claim at once; none gets an item twice."""
        if limit < 1:
            return []

        def write(conn: Connection) -> list[QueueItem]:
            now = time.time()
            rows = conn.execute(self._candidates(limit)).all()
            picked = [int(r[0]) for r in rows if self._claimable(conn, int(r[0]), r[1])]
            if not picked:
                return []
            conn.execute(update(q).where(q.c.id.in_(picked)).values(
                state="claimed", fence=q.c.fence + 1, lease_owner=worker,
                lease_until=now + self.lease_s, attempts=q.c.attempts + 1, claimed_at=now,
                finished_at=None))  # fmt: skip
            return _fetch(conn, picked)

        return self.store.write(write)

    def renew(self, worker: str, held: Sequence[tuple[int, int]]) -> set[int]:
        """Extend the leases of ``held`` ``(id, fence)`` claims of ``worker`` by ``lease_s``
        from now; the ids it no longer holds (fence moved on, not claimed, not its own)."""
        pairs = sorted(set(held))
        if not pairs:
            return set()

        def write(conn: Connection) -> set[int]:
            until = time.time() + self.lease_s
            gone = set()
            for item_id, fence in pairs:
                done = conn.execute(update(q).where(
                    q.c.id == item_id, q.c.fence == fence, q.c.state == "claimed",
                    q.c.lease_owner == worker).values(lease_until=until))  # fmt: skip
                if done.rowcount != 1:
                    gone.add(item_id)
            return gone

        return self.store.write(write)

    def finish(self, item_id: int, fence: int, state: str = "done", note: str = "") -> bool:
        """End claimed item ``item_id`` with ``state`` (done, cancelled or lost), only while
        ``fence`` is still its fence: False (and nothing written) when it moved on."""
        if state not in FINAL:
            raise ValueError(f"not a final queue state: {state!r}")

        def write(conn: Connection) -> bool:
            done = conn.execute(update(q).where(
                q.c.id == item_id, q.c.fence == fence, q.c.state == "claimed",
            ).values(state=state, note=note, finished_at=time.time(), lease_until=None))  # fmt: skip
            if done.rowcount != 1:
                return False
            group = conn.execute(select(q.c.group_name).where(q.c.id == item_id)).scalar_one()
            if conn.execute(_in_group(group, "pending").limit(1)).first() is not None:
                self._notify(conn, "freed")
            return True

        return self.store.write(write)

    def expire(self, requeue_max: int = 0, now: float | None = None) -> Expired:
        """Claimed items whose lease passed (before ``now``): back to ``pending`` (fence
        bumped, lease cleared) while ``attempts <= requeue_max`` and their run was not asked
        to cancel, else ``lost`` (finished; the lease owner kept, to say who lost it)."""
        at = time.time() if now is None else now

        def write(conn: Connection) -> Expired:
            due = conn.execute(select(q.c.id, q.c.group_name).where(
                q.c.state == "claimed", q.c.lease_until < at).order_by(q.c.id)).all()  # fmt: skip
            for group in sorted({r[1] for r in due}):
                self._lock_group(conn, group)
            requeued: list[int] = []
            lost: list[int] = []
            for item in _fetch(conn, [int(r[0]) for r in due]):
                outcome = self._expire_one(conn, item, requeue_max, at)
                if outcome is not None:
                    (requeued if outcome == "pending" else lost).append(item.id)
            if requeued:
                self._notify(conn, "requeued")
            return Expired(_fetch(conn, requeued), _fetch(conn, lost))

        return self.store.write(write)

    @staticmethod
    def _expire_one(conn: Connection, item: QueueItem, requeue_max: int, at: float) -> str | None:
        """Expire one item, re-checked in the update (a renewal may have won): its new
        state, or None when it was not expired."""
        stopping = conn.execute(
            select(runs_t.c.cancel_requested).where(runs_t.c.id == int(item.run_id))
        ).scalar()  # fmt: skip
        again = item.attempts <= requeue_max and not stopping
        who = f"worker {item.lease_owner} lost its lease" + (
            " while its run was being cancelled" if stopping else ""
        )
        values: dict[str, Any] = (
            {"state": "pending", "fence": q.c.fence + 1, "lease_owner": None,
             "lease_until": None, "note": f"requeued: {who}"}
            if again else {"state": "lost", "finished_at": at, "note": f"lost: {who}"}
        )  # fmt: skip
        done = conn.execute(update(q).where(
            q.c.id == item.id, q.c.fence == item.fence, q.c.state == "claimed",
            q.c.lease_until < at).values(**values))  # fmt: skip
        return str(values["state"]) if done.rowcount == 1 else None

    def cancel_run(self, run_id: str) -> QueueItem | None:
        """The pending item of ``run_id`` becomes ``cancelled``; None when it has no
        pending item (claimed ones are stopped through the run's cancel flag)."""
        key = _run_key(run_id)
        if key is None:
            return None

        def write(conn: Connection) -> QueueItem | None:
            query = select(q.c.id).where(q.c.run_id == key, q.c.state == "pending")
            ids = _ids(conn, query.with_for_update() if self._pg else query)
            if not ids:
                return None
            conn.execute(update(q).where(q.c.id.in_(ids), q.c.state == "pending").values(
                state="cancelled", finished_at=time.time(), note="cancelled"))  # fmt: skip
            return _fetch(conn, ids)[-1]

        return self.store.write(write)

    # -- reads -----------------------------------------------------------------------------
    def get(self, item_id: int) -> QueueItem | None:
        with self.store.read() as conn:
            found = _fetch(conn, [item_id])
        return found[0] if found else None

    def by_run(self, run_id: str) -> QueueItem | None:
        """The newest item of run ``run_id``, or None."""
        key = _run_key(run_id)
        if key is None:
            return None
        with self.store.read() as conn:
            row = conn.execute(select(q).where(q.c.run_id == key).order_by(q.c.id.desc())).first()
        return _item(row) if row is not None else None

    def by_delivery(self, delivery_id: str) -> list[QueueItem]:
        """Every item enqueued for webhook delivery ``delivery_id``, oldest first."""
        with self.store.read() as conn:
            rows = conn.execute(select(q).where(q.c.delivery_id == delivery_id).order_by(q.c.id))
            return [_item(row) for row in rows]

    def list(self, state: str | None = None, limit: int = 200) -> list[QueueItem]:
        """Items (with ``state``, if given), newest first."""
        query = select(q).order_by(q.c.id.desc()).limit(max(1, limit))
        if state is not None:
            query = query.where(q.c.state == state)
        with self.store.read() as conn:
            return [_item(row) for row in conn.execute(query)]

    def depth(self) -> dict[str, int]:
        """How many items are in each state (every state named, for metrics)."""
        with self.store.read() as conn:
            rows = conn.execute(select(q.c.state, func.count()).group_by(q.c.state)).all()
        return {**dict.fromkeys(STATES, 0), **{str(s): int(n) for s, n in rows}}
