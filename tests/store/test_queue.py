"""The shared queue on SQLite and on the suite's real PostgreSQL: every method, the
concurrency-group rules (table-driven), leases, requeue-once vs lost, fencing, and the
Waker's LISTEN/NOTIFY wake-ups (PostgreSQL restarted included)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from vmrunner.store.engine import Store, open_store
from vmrunner.store.queue import CHANNEL, ItemSpec, Queue, QueueItem, Waker
from vmrunner.store.runs import RunStore


@dataclass
class Env:
    store: Store
    queue: Queue
    runs: RunStore

    def spec(self, group: str = "g", cip: bool = False, **kw: object) -> ItemSpec:
        """A spec of a fresh queued run (the run row the queue item refers to)."""
        run_id = self.runs.create("workflow", {}, title=group, queued=True)
        fields: dict[str, object] = {
            "run_id": run_id, "repo": "o/r", "sha": "a" * 40, "ref": "refs/heads/main",
            "branch": "main", "workflow": ".github/workflows/ci.yml", "workflow_name": "CI",
            "event": "push", "payload": {"ref": "refs/heads/main", "n": [1, 2]},
            "group": group, "cancel_in_progress": cip,
        }  # fmt: skip
        fields.update(kw)
        return ItemSpec(**fields)  # type: ignore[arg-type]

    def add(self, group: str = "g", cip: bool = False) -> QueueItem:
        return self.queue.enqueue(self.spec(group, cip)).item


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    store = open_store(db_url)
    try:
        yield Env(store, Queue(store, lease_s=1.0), RunStore(store))
    finally:
        store.close()


def states(env: Env) -> dict[int, str]:
    return {i.id: i.state for i in env.queue.list(limit=1000)}


# -- enqueue and reads -----------------------------------------------------------------------


def test_an_enqueued_item_keeps_its_spec_with_the_group_folded(env: Env) -> None:
    spec = env.spec("Build-Main", delivery_id="d-1")
    item = env.queue.enqueue(spec).item
    assert (item.run_id, item.delivery_id, item.repo, item.sha, item.ref, item.branch) == (
        spec.run_id, "d-1", "o/r", "a" * 40, "refs/heads/main", "main")  # fmt: skip
    assert (item.workflow, item.workflow_name, item.event) == (spec.workflow, "CI", "push")
    assert item.payload == {"ref": "refs/heads/main", "n": [1, 2]}
    assert item.group == "BUILD-MAIN" and item.cancel_in_progress is False
    assert (item.state, item.fence, item.attempts, item.lease_owner, item.note) == (
        "pending", 0, 0, None, "")  # fmt: skip
    assert item.claimed_at is None and item.finished_at is None and item.created_at > 0
    assert env.queue.get(item.id) == item and env.queue.by_run(spec.run_id) == item
    assert env.queue.by_delivery("d-1") == [item] and env.queue.by_delivery("d-2") == []


def test_reads_of_what_is_not_there_are_none(env: Env) -> None:
    assert env.queue.get(12345) is None
    assert env.queue.by_run("12345") is None and env.queue.by_run("not-a-number") is None
    assert env.queue.cancel_run("not-a-number") is None
    with pytest.raises(KeyError):
        env.queue.enqueue(env.spec(run_id="x1"))


def test_list_is_newest_first_with_a_state_filter_and_depth_counts_every_state(env: Env) -> None:
    a, b, c = env.add("g1"), env.add("g2"), env.add("g3")
    env.queue.claim("w", 1)
    env.queue.cancel_run(c.run_id)
    assert [i.id for i in env.queue.list()] == [c.id, b.id, a.id]
    assert [i.id for i in env.queue.list("pending")] == [b.id]
    assert [i.id for i in env.queue.list(limit=2)] == [c.id, b.id]
    assert env.queue.depth() == {"pending": 1, "claimed": 1, "done": 0, "cancelled": 1, "lost": 0}


# -- claims ----------------------------------------------------------------------------------


def test_a_claim_takes_the_oldest_item_under_a_lease(env: Env) -> None:
    first, _ = env.add("g1"), env.add("g2")
    (item,) = env.queue.claim("w1")
    assert item.id == first.id and item.state == "claimed" and item.lease_owner == "w1"
    assert (item.fence, item.attempts) == (1, 1) and item.claimed_at is not None
    assert item.lease_until == pytest.approx(item.claimed_at + 1.0)
    assert env.queue.claim("w1", 0) == []


def test_a_claim_takes_at_most_one_item_per_group_oldest_groups_first(env: Env) -> None:
    a1, b1, a2, c1 = env.add("a"), env.add("b"), env.add("a"), env.add("c")
    assert states(env)[a1.id] == "cancelled"  # superseded by a2
    got = env.queue.claim("w", 10)
    assert [i.id for i in got] == [b1.id, a2.id, c1.id]
    assert env.queue.claim("w", 10) == []


def test_renew_extends_held_leases_and_names_the_ones_no_longer_held(env: Env) -> None:
    a, b, c = env.add("a"), env.add("b"), env.add("c")
    held = {i.id: i for i in env.queue.claim("w", 3)}
    assert env.queue.finish(c.id, held[c.id].fence)
    before = held[a.id].lease_until
    gone = env.queue.renew("w", [(a.id, 1), (b.id, 7), (c.id, 1), (999, 1)])
    assert gone == {b.id, c.id, 999}
    renewed = env.queue.get(a.id)
    assert renewed is not None and renewed.lease_until is not None and before is not None
    assert renewed.lease_until >= before
    assert env.queue.renew("other", [(a.id, 1)]) == {a.id}
    assert env.queue.renew("w", []) == set()


def test_finish_ends_a_claim_once_and_refuses_anything_else(env: Env) -> None:
    a, b = env.add("a"), env.add("b")
    held = {i.id: i for i in env.queue.claim("w", 2)}
    assert not env.queue.finish(a.id, held[a.id].fence + 1)
    assert env.queue.finish(a.id, held[a.id].fence, "done", "ok")
    assert not env.queue.finish(a.id, held[a.id].fence)  # already finished
    assert env.queue.finish(b.id, held[b.id].fence, "cancelled", "stopped")
    done, cancelled = env.queue.get(a.id), env.queue.get(b.id)
    assert done is not None and (done.state, done.note, done.lease_until) == ("done", "ok", None)
    assert done.finished_at is not None and done.lease_owner == "w"
    assert cancelled is not None and (cancelled.state, cancelled.note) == ("cancelled", "stopped")
    with pytest.raises(ValueError, match="final queue state"):
        env.queue.finish(a.id, 1, "pending")


def test_cancel_run_cancels_only_a_pending_item(env: Env) -> None:
    a, b = env.add("a"), env.add("b")
    env.queue.claim("w", 1)
    assert env.queue.cancel_run(a.run_id) is None  # claimed: stopped through the run instead
    got = env.queue.cancel_run(b.run_id)
    assert got is not None and got.id == b.id and got.state == "cancelled" and got.finished_at
    assert env.queue.cancel_run(b.run_id) is None
    assert env.queue.claim("w", 5) == []


# -- concurrency groups (table-driven) -------------------------------------------------------

# Steps: ("add", label, group, cip) | ("claim", n, labels claimed) | ("finish", label)
# | ("stop", label, [labels to stop]) (an "add" with cip whose to_stop is checked).
GROUP_CASES = {
    "three pushes: middle cancelled, one running, newest pending, then run": (
        [("add", "a", "main", False), ("claim", 5, ["a"]), ("add", "b", "main", False),
         ("add", "c", "Main", False), ("claim", 5, []), ("finish", "a"), ("claim", 5, ["c"])],
        {"a": "done", "b": "cancelled", "c": "claimed"},
    ),
    "an older pending run is cancelled even when nothing runs": (
        [("add", "a", "g", False), ("add", "b", "g", False), ("claim", 5, ["b"])],
        {"a": "cancelled", "b": "claimed"},
    ),
    "cancel-in-progress stops the running one; the new one waits until it ended": (
        [("add", "a", "g", False), ("claim", 1, ["a"]), ("stop", "b", "g", ["a"]),
         ("claim", 5, []), ("finish", "a"), ("claim", 5, ["b"])],
        {"a": "done", "b": "claimed"},
    ),
    "cancel-in-progress with nothing running stops nothing": (
        [("add", "a", "g", False), ("stop", "b", "g", [])], {"a": "cancelled", "b": "pending"},
    ),
    "groups are independent": (
        [("add", "a", "g1", False), ("add", "b", "g2", False), ("claim", 5, ["a", "b"]),
         ("add", "c", "g1", True), ("claim", 5, [])],
        {"a": "claimed", "b": "claimed", "c": "pending"},
    ),
    "group names ignore case": (
        [("add", "a", "CI-main", False), ("add", "b", "ci-MAIN", False)],
        {"a": "cancelled", "b": "pending"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", GROUP_CASES, ids=list(GROUP_CASES))
def test_group_rules(env: Env, case: str) -> None:
    steps, final = GROUP_CASES[case]
    items: dict[str, QueueItem] = {}
    for step in steps:
        kind, arg = step[0], step[1]
        if kind in ("add", "stop"):
            got = env.queue.enqueue(env.spec(str(step[2]), bool(kind == "stop" or step[3])))
            items[str(arg)] = got.item
            if kind == "stop":
                assert sorted(i.id for i in got.to_stop) == sorted(items[x].id for x in step[3])  # type: ignore[union-attr]
        elif kind == "claim":
            claimed = env.queue.claim("w", int(arg))  # type: ignore[call-overload]
            assert [i.id for i in claimed] == [items[x].id for x in step[2]]  # type: ignore[union-attr]
            items.update({k: i for k, v in items.items() for i in claimed if i.id == v.id})
        else:
            assert env.queue.finish(items[str(arg)].id, items[str(arg)].fence)
    now = states(env)
    assert {label: now[item.id] for label, item in items.items()} == final


def test_superseded_items_say_which_run_replaced_them(env: Env) -> None:
    old = env.add("g")
    new = env.queue.enqueue(env.spec("g"))
    (gone,) = new.superseded
    assert gone.id == old.id and gone.state == "cancelled" and gone.finished_at is not None
    assert gone.note == f"superseded by run {new.item.run_id}"


def test_cancel_in_progress_flags_the_running_run_in_the_same_transaction(env: Env) -> None:
    running = env.add("g")
    env.runs.start(running.run_id)
    env.queue.claim("w")
    new = env.queue.enqueue(env.spec("g", cip=True))
    assert [i.id for i in new.to_stop] == [running.id] and new.to_stop[0].state == "claimed"
    assert f"run {new.item.run_id}" in new.to_stop[0].note
    assert env.runs.heartbeat(running.run_id) is True  # the worker's watch sees the flag
    assert env.runs.heartbeat(new.item.run_id) is False


# -- leases, requeue, fencing ----------------------------------------------------------------


def test_a_lease_that_has_not_passed_is_not_expired(env: Env) -> None:
    env.add()
    (item,) = env.queue.claim("w")
    assert item.lease_until is not None
    nothing = env.queue.expire(requeue_max=5, now=item.lease_until - 0.5)
    assert nothing.requeued == [] and nothing.lost == []


def test_an_expired_lease_is_lost_without_requeue(env: Env) -> None:
    env.add()
    (item,) = env.queue.claim("w")
    expired = env.queue.expire(requeue_max=0, now=(item.lease_until or 0) + 1)
    assert expired.requeued == [] and [i.id for i in expired.lost] == [item.id]
    (lost,) = expired.lost
    assert lost.state == "lost" and lost.lease_owner == "w" and "worker w" in lost.note
    assert lost.finished_at is not None
    assert env.queue.expire(now=(item.lease_until or 0) + 1).lost == []  # only once


def test_requeue_once_then_lost(env: Env) -> None:
    env.add()
    (first,) = env.queue.claim("w1")
    again = env.queue.expire(requeue_max=1, now=(first.lease_until or 0) + 1)
    (requeued,) = again.requeued
    assert again.lost == [] and requeued.state == "pending" and requeued.lease_owner is None
    assert requeued.fence == first.fence + 1 and "w1" in requeued.note
    (second,) = env.queue.claim("w2")
    assert second.id == first.id and second.attempts == 2 and second.fence == first.fence + 2
    final = env.queue.expire(requeue_max=1, now=(second.lease_until or 0) + 1)
    assert final.requeued == [] and [i.id for i in final.lost] == [first.id]


def test_a_run_being_cancelled_is_not_requeued(env: Env) -> None:
    old = env.add("g")
    env.runs.start(old.run_id)
    (item,) = env.queue.claim("w")
    env.queue.enqueue(env.spec("g", cip=True))
    expired = env.queue.expire(requeue_max=3, now=(item.lease_until or 0) + 1)
    assert expired.requeued == [] and [i.id for i in expired.lost] == [old.id]


def test_a_stale_workers_writes_are_fenced_off(env: Env) -> None:
    env.add()
    (stale,) = env.queue.claim("w1")
    env.queue.expire(requeue_max=1, now=(stale.lease_until or 0) + 1)
    (fresh,) = env.queue.claim("w2")
    assert not env.queue.finish(stale.id, stale.fence)  # the old claim's token
    assert env.queue.renew("w1", [(stale.id, stale.fence)]) == {stale.id}
    current = env.queue.get(stale.id)
    assert current is not None and (current.state, current.lease_owner) == ("claimed", "w2")
    assert env.queue.finish(fresh.id, fresh.fence)


def test_a_renewed_lease_outlives_its_first_term(env: Env) -> None:
    env.add()
    (item,) = env.queue.claim("w")
    time.sleep(0.05)
    assert env.queue.renew("w", [(item.id, item.fence)]) == set()
    renewed = env.queue.get(item.id)
    assert renewed is not None and renewed.lease_until and item.lease_until
    assert renewed.lease_until > item.lease_until
    between = (item.lease_until + renewed.lease_until) / 2
    assert env.queue.expire(now=between).lost == []
    assert [i.id for i in env.queue.expire(now=renewed.lease_until + 0.01).lost] == [item.id]


def test_a_lease_passes_in_real_time(env: Env) -> None:
    env.add()
    (item,) = env.queue.claim("w")
    time.sleep(1.2)  # longer than the 1 s lease: no renewal came
    assert [i.id for i in env.queue.expire().lost] == [item.id]


# -- the Waker -------------------------------------------------------------------------------


def test_the_sqlite_waker_sleeps_and_says_nothing(tmp_path: object) -> None:
    store = open_store(f"sqlite:///{tmp_path}/w.db")
    waker = Waker(store, poll_s=0.05)
    try:
        assert waker.wait(10.0) is False
    finally:
        waker.close()
        store.close()


def _wait_in_thread(waker: Waker, timeout: float) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(waker.wait(timeout)))
    thread.start()
    return thread, result


def test_an_enqueue_in_another_process_wakes_a_waiting_thread(db_url_pg: str) -> None:
    store, other = open_store(db_url_pg), open_store(db_url_pg)
    waker = Waker(store)
    try:
        assert waker.wait(0.05) is False  # nothing yet
        thread, result = _wait_in_thread(waker, 60.0)
        Env(other, Queue(other), RunStore(other)).add()
        thread.join(70)
        assert result == [True]
        assert waker.wait(0.05) is False  # one wake-up, not one per queued notification
    finally:
        waker.close()
        store.close()
        other.close()


def test_a_notify_sent_while_nobody_waits_is_kept_for_the_next_wait(db_url_pg: str) -> None:
    store = open_store(db_url_pg)
    waker = Waker(store)
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f"NOTIFY {CHANNEL}, 'x'")
        assert waker.wait(60.0) is True
    finally:
        waker.close()
        store.close()


def test_close_from_another_thread_ends_a_wait(db_url_pg: str) -> None:
    store = open_store(db_url_pg)
    waker = Waker(store)
    thread, result = _wait_in_thread(waker, 0.5)
    waker.close()
    thread.join(30)
    assert result == [False] and waker.wait(0.01) is False
    store.close()


def test_the_waker_reconnects_after_postgresql_restarts(pg_cluster: object) -> None:
    url = pg_cluster.url  # type: ignore[attr-defined]
    store = open_store(url)
    waker = Waker(store, poll_s=0.05)
    try:
        pg_cluster.stop("fast")  # type: ignore[attr-defined]
        assert waker.wait(5.0) is False  # the connection dropped
        assert waker.wait(0.1) is False  # the server is down: sleeps, no error
        pg_cluster.start()  # type: ignore[attr-defined]
        assert waker.wait(5.0) is True  # reconnected: may have missed something
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"NOTIFY {CHANNEL}, 'after restart'")
        assert waker.wait(60.0) is True
    finally:
        waker.close()
        store.close()
