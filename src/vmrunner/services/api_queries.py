"""Read-only queries the HTTP API needs beyond ``Services``: the shared queue per group
and per host, the registered workers, readiness, and the figures ``/metrics`` exports.

Each is one or a few short reads; none changes anything. The learning result types
are re-exported here for the API's typed responses (edges import nothing below the
service layer).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import and_, case, func, literal, select, text

from vmrunner.errors import VmrunnerError
from vmrunner.learning.results import LearningStats, Lessons, Prediction, Related, RunExplanation
from vmrunner.store import engine as store_engine
from vmrunner.store.models import runs
from vmrunner.store.queue import Queue, QueueItem
from vmrunner.store.workers import Workers

__all__ = [
    "DURATION_BUCKETS",
    "LearningStats",
    "Lessons",
    "Prediction",
    "Related",
    "RunExplanation",
    "hosts",
    "metric_figures",
    "queue_view",
    "readiness",
]

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
ACCELS = ("kvm", "tcg", "hvf", "whpx")


def _entry(item: QueueItem) -> dict[str, Any]:
    return {
        "run_id": item.run_id, "repo": item.repo, "sha": item.sha, "ref": item.ref,
        "branch": item.branch, "workflow": item.workflow, "workflow_name": item.workflow_name,
        "event": item.event, "group": item.group, "state": item.state,
        "created_at": item.created_at, "claimed_at": item.claimed_at,
        "worker": item.lease_owner, "lease_until": item.lease_until, "attempts": item.attempts,
    }  # fmt: skip


def _host_of(worker: str | None) -> str:
    """The host of a worker id ``host:pid:start-ticks``."""
    return (worker or "").rsplit(":", 2)[0] or "-"


def queue_view(services: Any, limit: int = 500) -> dict[str, Any]:
    """The pending and claimed items of the shared queue (oldest first), grouped per
    concurrency group and per host (claimed items only: pending ones have no host),
    with the depth of every state."""
    queue = Queue(services.store)
    items = sorted(queue.list("pending", limit) + queue.list("claimed", limit), key=lambda i: i.id)
    groups: dict[str, dict[str, Any]] = {}
    by_host: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        group = groups.setdefault(item.group, {"group": item.group, "pending": [], "claimed": []})
        group[item.state].append(_entry(item))
        if item.state == "claimed":
            by_host.setdefault(_host_of(item.lease_owner), []).append(_entry(item))
    return {
        "depth": queue.depth(),
        "groups": list(groups.values()),
        "hosts": [{"host": h, "claimed": found} for h, found in sorted(by_host.items())],
    }


def hosts(services: Any) -> list[dict[str, Any]]:
    """The registered workers: capacity, running, draining, last heartbeat (and its age)."""
    now = time.time()
    return [{**asdict(w), "heartbeat_age_s": max(0.0, now - w.heartbeat_at)}
            for w in Workers(services.store).list()]  # fmt: skip


@dataclass(frozen=True)
class Readiness:
    """Whether the server can serve: the database answers and its schema is current."""

    ready: bool
    database: bool
    revision: str | None
    head: str | None
    message: str = ""


def _head() -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_engine.__file__).parent / "migrations"))
    return ScriptDirectory.from_config(cfg).get_current_head()


def readiness(services: Any) -> Readiness:
    """Readiness of the store: reachable, migrated to the newest revision."""
    head = _head()
    try:
        with services.store.read() as conn:
            conn.execute(text("SELECT 1"))
            opts = {"version_table": store_engine.VERSION_TABLE}
            revision = MigrationContext.configure(conn, opts=opts).get_current_revision()
    except (VmrunnerError, OSError) as exc:
        return Readiness(False, False, None, head, f"database unreachable: {exc}")
    except Exception as exc:  # noqa: BLE001 -- any driver failure means "not ready"
        return Readiness(False, False, None, head, f"database unreachable: {exc}")
    if revision != head:
        return Readiness(False, True, revision, head, f"schema at {revision}, newest is {head}")
    return Readiness(True, True, revision, head)


@dataclass
class Figures:
    """What ``/metrics`` exports from the store."""

    runs: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, status): count
    queue: dict[str, int] = field(default_factory=dict)  # state: count
    durations: dict[str, tuple[list[int], float, int]] = field(default_factory=dict)
    """kind: (cumulative counts per DURATION_BUCKETS, sum of seconds, count)"""
    accels: dict[str, int] = field(default_factory=dict)  # accel: finished runs that used it


def _duration_query() -> Any:
    took = runs.c.finished_at - runs.c.started_at
    buckets = [func.sum(case((took <= b, 1), else_=0)) for b in DURATION_BUCKETS]
    done = and_(runs.c.finished_at.is_not(None), runs.c.started_at.is_not(None))
    return (select(runs.c.kind, func.sum(took), func.count(), *buckets)
            .where(done).group_by(runs.c.kind))  # fmt: skip


def _accel_query() -> Any:
    counts = [func.sum(case((runs.c.document.like(f'%"accel": "{a}"%'), 1), else_=0))
              for a in ACCELS]  # fmt: skip
    return select(literal(1), *counts).where(runs.c.document.is_not(None))


def metric_figures(services: Any) -> Figures:
    """Runs by kind and status, queue depth by state, run durations by kind (finished
    runs that started), and finished runs by the accelerator their VMs booted with (the
    document's ``accel``). A few aggregate queries."""
    figures = Figures(queue=Queue(services.store).depth())
    with services.store.read() as conn:
        for kind, status, n in conn.execute(
            select(runs.c.kind, runs.c.status, func.count()).group_by(runs.c.kind, runs.c.status)
        ):
            figures.runs[(str(kind), str(status))] = int(n)
        for row in conn.execute(_duration_query()):
            counts: Sequence[Any] = row[3:]
            figures.durations[str(row[0])] = ([int(c or 0) for c in counts], float(row[1] or 0),
                                              int(row[2]))  # fmt: skip
        accel_row = conn.execute(_accel_query()).first()
    if accel_row is not None:
        figures.accels = {a: int(n or 0) for a, n in zip(ACCELS, accel_row[1:], strict=True)}
    return figures
