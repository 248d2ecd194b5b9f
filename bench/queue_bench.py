"""The shared queue alone, on a throwaway PostgreSQL cluster (and SQLite for the first two):

* enqueue: items/s, one process, each in a group of its own;
* claim + finish: items/s with P claimer processes (spawn), each claiming one at a time
  (from the first claim to the last finish);
* wake-up: from an item's enqueue committed (``created_at``) to a worker that waits on the
  :class:`Waker` holding it (``claimed_at``), p50/p99 (a 1 s poll would average 500 ms).

    .venv/bin/python bench/queue_bench.py [--items 400] [--claimers 4] [--wakes 50]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import PgCluster
from vmrunner.store.engine import open_store
from vmrunner.store.queue import ItemSpec, Queue, Waker
from vmrunner.store.runs import RunStore


def spec(run_id: str, group: str) -> ItemSpec:
    return ItemSpec(run_id=run_id, repo="o/r", sha="s", ref="r", branch="b", workflow="w",
                    workflow_name="W", event="push", payload={"x": 1}, group=group)  # fmt: skip


def drain(url: str, name: str, out: Any) -> None:
    store = open_store(url)
    queue, done, first = Queue(store), 0, None
    while items := queue.claim(name, 1):
        first = first or time.time()
        for item in items:
            done += queue.finish(item.id, item.fence)
    out.put((done, first or time.time(), time.time()))
    store.close()


def throughput(url: str, items: int, claimers: int) -> None:
    store = open_store(url)
    runs = [RunStore(store).create("workflow", {}, queued=True) for _ in range(items)]
    queue = Queue(store)
    start = time.perf_counter()
    for n, run_id in enumerate(runs):
        queue.enqueue(spec(run_id, f"g{n}"))
    took = time.perf_counter() - start
    print(f"  enqueue               {items / took:8.0f} items/s   (n={items})")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=drain, args=(url, f"w{n}", out)) for n in range(claimers)]
    for proc in procs:
        proc.start()
    got = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(60)
    total, took = sum(g[0] for g in got), max(g[2] for g in got) - min(g[1] for g in got)
    print(f"  claim + finish        {total / took:8.0f} items/s   ({claimers} processes, "
          f"from the first claim to the last finish, n={total})")  # fmt: skip
    store.close()


def wakes(url: str, count: int) -> None:
    store, worker_store = open_store(url), open_store(url)
    queue, worker_queue, runs = Queue(store), Queue(worker_store), RunStore(store)
    waker, lags, stop = Waker(worker_store), [], threading.Event()

    def worker() -> None:
        while not stop.is_set():
            for item in worker_queue.claim("w", 10):
                lags.append((item.claimed_at or 0) - item.created_at)
                worker_queue.finish(item.id, item.fence)
            waker.wait(1.0)

    thread = threading.Thread(target=worker)
    thread.start()
    for n in range(count):
        queue.enqueue(spec(runs.create("workflow", {}, queued=True), f"wake{n}"))
        time.sleep(0.1)
    time.sleep(1.5)
    stop.set()
    thread.join(10)
    waker.close()
    lags.sort()
    p99 = lags[min(len(lags) - 1, round(0.99 * (len(lags) - 1)))]
    print(f"  wake-up (NOTIFY)      p50 {statistics.median(lags) * 1000:7.1f} ms   "
          f"p99 {p99 * 1000:7.1f} ms   (n={len(lags)})")  # fmt: skip
    store.close()
    worker_store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--claimers", type=int, default=4)
    ap.add_argument("--wakes", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite")
        throughput(f"sqlite:///{tmp}/q.db", args.items, args.claimers)
    cluster = PgCluster()
    try:
        print("PostgreSQL")
        throughput(cluster.url, args.items, args.claimers)
        wakes(cluster.url, args.wakes)
    finally:
        cluster.remove()


if __name__ == "__main__":
    main()
