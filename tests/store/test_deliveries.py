"""Kept webhook deliveries on both databases: a copy changes only its count; claims
take each delivery once; a claim whose process died is taken over."""

from __future__ import annotations

import subprocess
import sys

from vmrunner.store.deliveries import STALE_PROCESSING_S, DeliveryStore
from vmrunner.store.engine import open_store
from vmrunner.store.owner import owner_of, this_host


def test_a_copy_of_a_kept_delivery_changes_only_its_count(db_url: str) -> None:
    store = DeliveryStore(open_store(db_url))
    assert store.add("d1", "push", '{"a": 1}', repo="o/r") is True
    assert store.add("d1", "push", '{"a": 2}', repo="x/y") is False
    kept = store.get("d1")
    assert kept is not None and (kept.copies, kept.payload, kept.repo) == (2, '{"a": 1}', "o/r")
    assert store.count() == 1


def test_claims_take_each_delivery_once_oldest_first(db_url: str) -> None:
    store = DeliveryStore(open_store(db_url))
    for i in range(5):
        store.add(f"d{i}", "push", "{}")
    store.add("ignored", "star", "{}", status="ignored")
    first = [d.id for d in store.claim(3)]
    second = [d.id for d in store.claim(3)]
    assert first == ["d0", "d1", "d2"] and second == ["d3", "d4"] and store.claim(3) == []
    assert {d.status for d in store.with_status("processing", 10)} == {"processing"}


def test_a_claim_whose_process_died_is_taken_over(db_url: str) -> None:
    store = DeliveryStore(open_store(db_url))
    store.add("d", "push", "{}")
    store.add("e", "push", "{}")
    [_, e] = store.claim(2)
    assert store.reclaim() == []  # this process is alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    note = f"{this_host()} {owner_of(int(dead.stdout))}"
    store.store.write(lambda c: c.exec_driver_sql(
        "UPDATE deliveries SET note = %s WHERE id = 'd'" if store.store.dialect == "postgresql"
        else "UPDATE deliveries SET note = ? WHERE id = 'd'", (note,)))  # fmt: skip
    assert store.reclaim() == ["d"]
    assert store.get("d").status == "received"  # type: ignore[union-attr]
    # a claim by another host is taken over only when it is stale
    store.store.write(
        lambda c: c.exec_driver_sql("UPDATE deliveries SET note = 'elsewhere 1:2:3' WHERE id = 'e'")
    )
    assert store.reclaim() == []
    assert store.reclaim(now=e.received_at + STALE_PROCESSING_S + 1) == ["e"]
