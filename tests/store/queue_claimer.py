"""A claimer process for the queue stress test (tests/store/test_queue_stress.py, started
with multiprocessing's ``spawn``): claims from the queue at URL until told to stop and the
queue gave nothing, holds each claim a few milliseconds, finishes it, and writes what it
did as JSON ``[[item id, group, fence, claimed at, finishing at, finish ok], ...]``."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from vmrunner.store.engine import open_store
from vmrunner.store.queue import Queue


def claim_until_stopped(url: str, name: str, stop: Any, out: str) -> None:
    store = open_store(url)
    queue = Queue(store, lease_s=60.0)
    records: list[list[Any]] = []
    try:
        while True:
            items = queue.claim(name, random.randint(1, 3))
            if not items:
                if stop.is_set():
                    break
                time.sleep(0.002)
                continue
            held = [[i.id, i.group, i.fence, time.time()] for i in items]
            time.sleep(0.05 + random.random() * 0.1)
            for item, record in zip(items, held, strict=True):
                record.append(time.time())
                record.append(queue.finish(item.id, item.fence))
            records += held
    finally:
        store.close()
        Path(out).write_text(json.dumps(records))
