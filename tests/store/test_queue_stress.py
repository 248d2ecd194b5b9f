"""Several OS processes (multiprocessing, spawn) claiming from one queue while a producer
enqueues into shared concurrency groups, each item while the group's previous one is held:
every item is claimed exactly once, and no group ever has two claimed items (checked by an
observer sampling the table, and by the claimers' own claim intervals)."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from queue_claimer import claim_until_stopped
from sqlalchemy import func, select

from vmrunner.store.engine import Store, open_store
from vmrunner.store.models import queue as queue_t
from vmrunner.store.queue import ItemSpec, Queue
from vmrunner.store.runs import RunStore

CLAIMERS = 4
SHARED_GROUPS = 3
PER_GROUP = 12
OWN_GROUPS = 40


def _observe(store: Store, stop: threading.Event, seen: list[int], bad: list[Any]) -> None:
    """Sample the groups with more than one claimed item (one statement: one snapshot)."""
    query = (select(queue_t.c.group_name, func.count()).where(queue_t.c.state == "claimed")
             .group_by(queue_t.c.group_name).having(func.count() > 1))  # fmt: skip
    while not stop.is_set():
        with store.read() as conn:
            bad += conn.execute(query).all()
        seen[0] += 1
        time.sleep(0.002)


def _spec(run_id: str, group: str, cip: bool) -> ItemSpec:
    return ItemSpec(run_id=run_id, repo="o/r", sha="s", ref="r", branch="b", workflow="w",
                    workflow_name="W", event="push", payload={"g": group}, group=group,
                    cancel_in_progress=cip)  # fmt: skip


def _produce(store: Store, timeout: float = 120.0) -> list[int]:
    """Enqueue OWN_GROUPS items of groups of their own, then PER_GROUP items into each of
    SHARED_GROUPS groups, each one as soon as the group's previous item is claimed: so the
    claimers always meet a group whose item is held while its next one waits."""
    queue, runs = Queue(store), RunStore(store)
    run_ids = iter([runs.create("workflow", {}, queued=True)
                    for _ in range(OWN_GROUPS + SHARED_GROUPS * PER_GROUP)])  # fmt: skip
    ids = [
        queue.enqueue(_spec(next(run_ids), f"own-{n}", False)).item.id for n in range(OWN_GROUPS)
    ]
    last: dict[str, list[int]] = {f"shared-{g}": [] for g in range(SHARED_GROUPS)}
    deadline = time.monotonic() + timeout
    while any(len(made) < PER_GROUP for made in last.values()):
        assert time.monotonic() < deadline, "the claimers stopped claiming"
        for group, made in last.items():
            previous = queue.get(made[-1]) if made else None
            if len(made) < PER_GROUP and (previous is None or previous.state != "pending"):
                made.append(queue.enqueue(_spec(next(run_ids), group, len(made) % 4 == 3)).item.id)
        time.sleep(0.002)
    return ids + [i for made in last.values() for i in made]


def _drained(queue: Queue, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        depth = queue.depth()
        if depth["pending"] == 0 and depth["claimed"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"queue not drained: {queue.depth()}")


def _overlaps(records: list[list[Any]]) -> list[tuple[str, int, int]]:
    """Claims of one group whose [claimed, finishing] intervals overlap (each interval lies
    inside the real claim, so any overlap here is a real double claim)."""
    by_group: dict[str, list[list[Any]]] = defaultdict(list)
    for rec in records:
        by_group[rec[1]].append(rec)
    found = []
    for group, recs in by_group.items():
        recs.sort(key=lambda r: r[3])
        found += [(group, a[0], b[0]) for a, b in itertools.pairwise(recs) if b[3] < a[4]]
    return found


@pytest.mark.slow
def test_many_claimer_processes_claim_each_item_once_and_one_per_group(
    db_url: str, tmp_path: Path
) -> None:
    store = open_store(db_url)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    outs = [tmp_path / f"claims-{n}.json" for n in range(CLAIMERS)]
    procs = [ctx.Process(target=claim_until_stopped, args=(db_url, f"w{n}", stop, str(out)))
             for n, out in enumerate(outs)]  # fmt: skip
    obs_stop, seen, bad = threading.Event(), [0], []  # type: ignore[var-annotated]
    watch = open_store(db_url)
    observer = threading.Thread(target=_observe, args=(watch, obs_stop, seen, bad))
    try:
        for proc in procs:
            proc.start()
        observer.start()
        ids = _produce(store)
        _drained(Queue(store), timeout=120)
    finally:
        stop.set()
        for proc in procs:
            proc.join(60)
            if proc.is_alive():
                proc.kill()
                proc.join(10)
        obs_stop.set()
        observer.join(30)
        watch.close()
    assert all(proc.exitcode == 0 for proc in procs)
    records = [rec for out in outs for rec in json.loads(out.read_text())]
    final = {i.id: i.state for i in Queue(store).list(limit=10_000)}
    claimed = [rec[0] for rec in records]
    done = sorted(i for i in ids if final[i] == "done")
    assert sorted(claimed) == done  # each done item claimed exactly once, nothing else claimed
    assert len(done) == len(ids) == len(set(ids))  # none superseded: one pending at a time
    assert all(rec[2] == 1 and rec[5] is True for rec in records)
    assert _overlaps(records) == []
    assert bad == [] and seen[0] > 10
    print(f"{len(ids)} items, {len(done)} run, {seen[0]} observations, "
          f"claims per process {[len(json.loads(o.read_text())) for o in outs]}")  # fmt: skip
    store.close()
