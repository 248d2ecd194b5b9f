"""The SQL queue against a small pure model of its rules (hypothesis, stateful, on
SQLite): random enqueues (with and without cancel-in-progress, group names in any case),
claims, renewals, fenced and stale finishes, lease expiry with requeue limits, and run
cancellations leave the queue exactly where the model says, and never two claimed items
in one group."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete

from vmrunner.store.engine import Store, open_store
from vmrunner.store.models import queue as queue_t
from vmrunner.store.models import runs as runs_t
from vmrunner.store.queue import FINAL, ItemSpec, Queue
from vmrunner.store.runs import RunStore


@dataclass
class Model:
    """One item as the rules say it is."""

    id: int
    run_id: str
    group: str
    state: str = "pending"
    fence: int = 0
    attempts: int = 0
    owner: str | None = None


class QueueMachine(RuleBasedStateMachine):
    store: Store  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.store.write(lambda c: (c.execute(delete(queue_t)), c.execute(delete(runs_t))))
        self.queue, self.runs = Queue(self.store), RunStore(self.store)
        self.items: dict[int, Model] = {}
        self.stopping: set[str] = set()  # runs asked to cancel

    def _any(self, state: str) -> bool:
        return any(m.state == state for m in self.items.values())

    def _in(self, group: str, state: str) -> list[Model]:
        return [m for m in sorted(self.items.values(), key=lambda m: m.id)
                if m.group == group and m.state == state]  # fmt: skip

    @rule(group=st.sampled_from(["main", "MAIN", "Ünï"]), cip=st.booleans())
    def enqueue(self, group: str, cip: bool) -> None:
        run_id = self.runs.create("workflow", {}, queued=True)
        got = self.queue.enqueue(ItemSpec(run_id=run_id, repo="o/r", sha="s", ref="r",
                                          branch=None, workflow="w", workflow_name="W",
                                          event="push", payload={}, group=group,
                                          cancel_in_progress=cip))  # fmt: skip
        key = group.upper()
        superseded, to_stop = self._in(key, "pending"), self._in(key, "claimed") if cip else []
        for m in superseded:
            m.state = "cancelled"
        self.stopping |= {m.run_id for m in to_stop}
        assert [i.id for i in got.superseded] == [m.id for m in superseded]
        assert [i.id for i in got.to_stop] == [m.id for m in to_stop]
        self.items[got.item.id] = Model(got.item.id, run_id, key)

    @precondition(lambda self: self._any("pending"))
    @rule(worker=st.sampled_from(["w1", "w2"]), limit=st.integers(1, 3))
    def claim(self, worker: str, limit: int) -> None:
        expected: list[Model] = []
        for m in sorted(self.items.values(), key=lambda m: m.id):
            free = not self._in(m.group, "claimed") and m.group not in {e.group for e in expected}
            if m.state == "pending" and free and len(expected) < limit:
                expected.append(m)
        got = self.queue.claim(worker, limit)
        assert [i.id for i in got] == [m.id for m in expected]
        for m in expected:
            m.state, m.fence, m.attempts, m.owner = "claimed", m.fence + 1, m.attempts + 1, worker

    @precondition(lambda self: self._any("claimed"))
    @rule(data=st.data(), stale=st.booleans(), state=st.sampled_from(FINAL))
    def finish(self, data: st.DataObject, stale: bool, state: str) -> None:
        m = self.items[data.draw(st.sampled_from(sorted(self.items)))]
        fence = m.fence - 1 if stale else m.fence
        ok = m.state == "claimed" and not stale
        assert self.queue.finish(m.id, fence, state) is ok
        if ok:
            m.state = state

    @precondition(lambda self: self._any("claimed"))
    @rule(worker=st.sampled_from(["w1", "w2"]), stale=st.booleans())
    def renew(self, worker: str, stale: bool) -> None:
        held = [(m.id, m.fence - stale) for m in self.items.values() if m.owner is not None]
        kept = {m.id for m in self.items.values()
                if m.state == "claimed" and m.owner == worker and not stale}  # fmt: skip
        assert self.queue.renew(worker, held) == {i for i, _ in held} - kept

    @precondition(lambda self: self._any("claimed"))
    @rule(requeue_max=st.integers(0, 2))
    def expire_every_lease(self, requeue_max: int) -> None:
        got = self.queue.expire(requeue_max, now=time.time() + 3600)
        claimed = sorted(
            (m for m in self.items.values() if m.state == "claimed"), key=lambda m: m.id
        )
        again = [m for m in claimed if m.attempts <= requeue_max and m.run_id not in self.stopping]
        for m in claimed:
            if m in again:
                m.state, m.fence, m.owner = "pending", m.fence + 1, None
            else:
                m.state = "lost"
        assert [i.id for i in got.requeued] == [m.id for m in again]
        assert [i.id for i in got.lost] == [m.id for m in claimed if m not in again]

    @rule()
    def expire_before_any_lease_ends(self) -> None:
        got = self.queue.expire(requeue_max=2, now=time.time())
        assert got.requeued == [] and got.lost == []

    @precondition(lambda self: bool(self.items))
    @rule(data=st.data())
    def cancel_run(self, data: st.DataObject) -> None:
        m = self.items[data.draw(st.sampled_from(sorted(self.items)))]
        got = self.queue.cancel_run(m.run_id)
        assert (got.id if got else None) == (m.id if m.state == "pending" else None)
        if m.state == "pending":
            m.state = "cancelled"

    @invariant()
    def the_table_is_the_model(self) -> None:
        rows = {i.id: (i.group, i.state, i.fence, i.attempts, i.lease_owner if i.state == "claimed" else None)
                for i in self.queue.list(limit=10_000)}  # fmt: skip
        assert rows == {m.id: (m.group, m.state, m.fence, m.attempts,
                               m.owner if m.state == "claimed" else None)
                        for m in self.items.values()}  # fmt: skip
        claimed = [m.group for m in self.items.values() if m.state == "claimed"]
        assert len(claimed) == len(set(claimed))
        depth = self.queue.depth()
        assert sum(depth.values()) == len(self.items)


def test_the_sql_queue_follows_the_model() -> None:
    store = open_store("sqlite://")  # in memory: the same SQL, fast enough for many examples
    QueueMachine.store = store
    try:
        run_state_machine_as_test(
            QueueMachine,
            settings=settings(max_examples=100, stateful_step_count=25, deadline=None),
        )
    finally:
        store.close()
