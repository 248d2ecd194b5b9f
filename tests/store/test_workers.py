"""The worker registry on SQLite and on the suite's real PostgreSQL: register, heartbeat,
drain flag, removal, stale rows, and worker ids."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from vmrunner.procs import proc_start_ticks
from vmrunner.store.engine import open_store
from vmrunner.store.owner import this_host
from vmrunner.store.workers import WorkerRecord, Workers, worker_id


@pytest.fixture
def workers(db_url: str) -> Iterator[Workers]:
    store = open_store(db_url)
    try:
        yield Workers(store)
    finally:
        store.close()


def test_worker_id_names_host_pid_and_start_ticks() -> None:
    host, pid, ticks = worker_id().rsplit(":", 2)
    assert (host, int(pid), int(ticks)) == (this_host(), os.getpid(), proc_start_ticks(os.getpid()))
    assert worker_id() == worker_id()


def test_register_heartbeat_and_remove(workers: Workers) -> None:
    before = time.time()
    workers.register("h1:1:1", "h1", 4)
    (rec,) = workers.list()
    assert rec == WorkerRecord("h1:1:1", "h1", 4, 0, False, rec.started_at, rec.heartbeat_at)
    assert rec.started_at >= before and rec.heartbeat_at == rec.started_at
    assert workers.heartbeat("h1:1:1", running=3, draining=True) is True
    (beat,) = workers.list()
    assert (beat.running, beat.draining) == (3, True) and beat.heartbeat_at >= rec.heartbeat_at
    assert beat.started_at == rec.started_at
    workers.remove("h1:1:1")
    workers.remove("h1:1:1")  # idempotent
    assert workers.list() == []
    assert workers.heartbeat("h1:1:1", running=0) is False  # gone: the caller registers again


def test_register_again_starts_fresh(workers: Workers) -> None:
    workers.register("w", "h", 2)
    workers.heartbeat("w", running=2, draining=True)
    workers.register("w", "h", 5)
    (rec,) = workers.list()
    assert (rec.capacity, rec.running, rec.draining) == (5, 0, False)


def test_list_is_by_id(workers: Workers) -> None:
    for wid in ("b", "c", "a"):
        workers.register(wid, "h", 1)
    assert [r.id for r in workers.list()] == ["a", "b", "c"]


def test_remove_stale_removes_only_rows_whose_heartbeat_stopped(workers: Workers) -> None:
    workers.register("old", "h", 1)
    workers.register("new", "h", 1)
    (old,) = [r for r in workers.list() if r.id == "old"]
    assert workers.remove_stale(60.0) == []
    time.sleep(0.05)
    workers.heartbeat("new", running=1)
    (new,) = [r for r in workers.list() if r.id == "new"]
    cutoff_now = (old.heartbeat_at + new.heartbeat_at) / 2 + 30.0
    assert workers.remove_stale(30.0, now=cutoff_now) == ["old"]
    assert [r.id for r in workers.list()] == ["new"]
