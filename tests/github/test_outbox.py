"""The outbox on SQLite and PostgreSQL: strict order per key, claims, retries, dead rows."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from vmrunner.github.reports import Report
from vmrunner.store.engine import Store, open_store
from vmrunner.store.outbox import Outbox


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    try:
        yield s
    finally:
        s.close()


def rep(key: str, n: int) -> Report:
    return Report("status", "o/r", "a" * 40, key, {"state": "pending", "n": n})


def test_rows_of_one_key_are_due_one_at_a_time_in_order(store: Store) -> None:
    box = Outbox(store)
    ids = box.add([rep("k1", 1), rep("k2", 1), rep("k1", 2), rep("k1", 3), rep("k2", 2)], now=100.0)
    assert len(ids) == 5 and ids == sorted(ids)
    assert [(r.key, r.body["n"]) for r in box.due(100.0)] == [("k1", 1), ("k2", 1)]
    box.mark_sent(ids[0], {"id": 9})
    assert [(r.key, r.body["n"]) for r in box.due(100.0)] == [("k2", 1), ("k1", 2)]
    box.retry(ids[2], "502", next_at=200.0)  # k1#2 waits: k1#3 must not overtake it
    assert [(r.key, r.body["n"]) for r in box.due(150.0)] == [("k2", 1)]
    assert [(r.key, r.body["n"]) for r in box.due(200.0)] == [("k2", 1), ("k1", 2)]
    box.dead(ids[2], "422")  # given up: the key goes on
    assert [(r.key, r.body["n"]) for r in box.due(200.0)] == [("k2", 1), ("k1", 3)]
    assert box.counts() == {"pending": 3, "sent": 1, "dead": 1}
    row = box.rows("k1")[1]
    assert (row.state, row.attempts, row.last_error) == ("dead", 2, "422")


def test_claim_leases_rows_and_keeps_the_key_blocked(store: Store) -> None:
    box = Outbox(store)
    first, second = box.add([rep("k", 1), rep("k", 2)], now=10.0)
    claimed = box.claim(now=10.0, lease_s=60.0)
    assert [r.id for r in claimed] == [first]
    assert box.claim(now=20.0) == []  # leased, and the second row waits behind it
    assert [r.id for r in box.claim(now=71.0)] == [first]  # the sender died: due again
    box.mark_sent(first, {"id": 5})
    assert [r.id for r in box.claim(now=71.0)] == [second]
    box.postpone([second], 500.0)
    assert box.due(499.0) == [] and [r.id for r in box.due(500.0)] == [second]
    assert box.rows("k")[1].attempts == 0  # postponing is not an attempt
    assert box.next_due_at() == 500.0


def test_result_of_is_the_newest_sent_result(store: Store) -> None:
    box = Outbox(store)
    a, b, _ = box.add([rep("c", 1), rep("c", 2), rep("c", 3)], now=1.0)
    assert box.result_of("c") is None
    box.mark_sent(a, {"id": 41})
    box.mark_sent(b, None)
    assert box.result_of("c") == {"id": 41}
    assert box.rows("c")[0].sent_at is not None


def test_marks_only_change_pending_rows(store: Store) -> None:
    box = Outbox(store)
    (row,) = box.add([rep("x", 1)], now=1.0)
    box.mark_sent(row, {"id": 1})
    box.retry(row, "late", next_at=5.0)
    box.dead(row, "late")
    assert (box.rows("x")[0].state, box.rows("x")[0].result) == ("sent", {"id": 1})
    assert box.add([]) == []


def test_two_claimers_never_take_one_row(store: Store) -> None:
    """Claims racing from threads (separate connections) hand out each row once."""
    box = Outbox(store)
    box.add([rep(f"k{i}", i) for i in range(60)], now=1.0)
    taken: list[int] = []
    lock = threading.Lock()

    def claim() -> None:
        for _ in range(10):
            rows = Outbox(store).claim(now=2.0, limit=7)
            with lock:
                taken.extend(r.id for r in rows)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == len(set(taken)) == 60
