"""Every run vmrunner accepts (exec, workflow, systest), kept from the moment it is
accepted: ``queued``, then ``running``, then its final status with its result document.

Run ids are the database's own sequence (as GitHub's run ids are numbers), so every
process and host sharing the database gets distinct ids. Log files stay on disk under
the run's directory; the store indexes them by name. Cancellation across processes is
a flag on the run that the process running it watches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, insert, select, update

from vmrunner.store.engine import Store
from vmrunner.store.models import run_logs, runs
from vmrunner.store.owner import this_host, this_owner

ACTIVE = ("queued", "running")
FINAL = ("success", "failure", "cancelled", "timeout", "error")


@dataclass(frozen=True)
class RunRecord:
    """One kept run, as the store has it."""

    id: str
    kind: str
    status: str
    title: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    host: str
    owner: str | None
    repo: str | None
    branch: str | None
    sha: str | None
    request: Mapping[str, Any]
    document: Mapping[str, Any] | None
    cancel_requested: bool
    run_dir: str | None
    logs: Mapping[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass(frozen=True)
class RunFilter:
    """Which runs ``RunStore.list`` returns, newest first; ``before`` pages backwards."""

    kind: str | None = None
    status: str | None = None
    repo: str | None = None
    branch: str | None = None
    host: str | None = None
    limit: int = 50
    before: int | None = None


def _record(row: Row[Any], logs: Mapping[str, str]) -> RunRecord:
    m = row._mapping
    return RunRecord(
        id=str(m["id"]), kind=m["kind"], status=m["status"], title=m["title"] or "",
        created_at=m["created_at"], started_at=m["started_at"], finished_at=m["finished_at"],
        host=m["host"], owner=m["owner"], repo=m["repo"], branch=m["branch"], sha=m["sha"],
        request=json.loads(m["request"]), document=json.loads(m["document"]) if m["document"] else None,
        cancel_requested=bool(m["cancel_requested"]), run_dir=m["run_dir"], logs=logs,
    )  # fmt: skip


def _int_id(run_id: str) -> int:
    """The row id of ``run_id``; KeyError unless it is ASCII digits (``"¹".isdigit()`` is
    true, and ``int("¹")`` fails)."""
    if not (str(run_id).isascii() and str(run_id).isdigit()):
        raise KeyError(run_id)
    return int(run_id)


class RunStore:
    """The runs of one database. Every method is one short transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self, kind: str, request: Mapping[str, Any], *, title: str = "",
        repo: str | None = None, branch: str | None = None, sha: str | None = None,
        queued: bool = False,
    ) -> str:  # fmt: skip
        """Accept a run: write it with status ``queued``, owned by this process (with
        ``queued``, owned by no process: it waits in the shared queue for a worker); its id."""
        values = {
            "kind": kind, "status": "queued", "title": title[:500], "created_at": time.time(),
            "host": this_host(), "owner": None if queued else this_owner(), "repo": repo, "branch": branch,
            "sha": sha, "request": json.dumps(dict(request), sort_keys=True, default=str),
        }  # fmt: skip

        def write(conn: Connection) -> int:
            key = conn.execute(insert(runs).values(**values)).inserted_primary_key
            assert key is not None
            return int(key[0])

        return str(self.store.write(write))

    def _set(self, run_id: str, **values: Any) -> None:
        key = _int_id(run_id)
        self.store.write(lambda c: c.execute(update(runs).where(runs.c.id == key).values(**values)))

    def set_run_dir(self, run_id: str, path: str) -> None:
        self._set(run_id, run_dir=path)

    def start(self, run_id: str) -> None:
        """The run is running now (in this process, on this host)."""
        now = time.time()
        self._set(run_id, status="running", started_at=now, heartbeat_at=now, owner=this_owner(),
                  host=this_host())  # fmt: skip

    def requeue(self, run_id: str) -> None:
        """The run waits in the shared queue again (its worker was lost): ``queued``, owned
        by no process, its start and any cancel request forgotten."""
        self._set(run_id, status="queued", started_at=None, owner=None, cancel_requested=False)

    def heartbeat(self, run_id: str) -> bool:
        """Record that the run is alive; returns whether a cancel was requested."""
        key = _int_id(run_id)

        def write(conn: Connection) -> bool:
            conn.execute(update(runs).where(runs.c.id == key).values(heartbeat_at=time.time()))
            flag = conn.execute(select(runs.c.cancel_requested).where(runs.c.id == key)).scalar()
            return bool(flag)

        return self.store.write(write)

    def finish(
        self, run_id: str, status: str, document: Mapping[str, Any], *, owner: str | None = None
    ) -> bool:
        """The run ended with ``status``; ``document`` is its result. With ``owner``, only
        while the run is still active and that process owns it (a worker that lost its
        lease cannot overwrite the run's fate); whether it was written."""
        if status not in FINAL:
            raise ValueError(f"not a final status: {status!r}")
        key = _int_id(run_id)
        query = update(runs).where(runs.c.id == key)
        if owner is not None:
            query = query.where(and_(runs.c.owner == owner, runs.c.status.in_(ACTIVE)))
        values = {"status": status, "finished_at": time.time(), "document": json.dumps(document)}
        return bool(self.store.write(lambda c: c.execute(query.values(**values)).rowcount == 1))

    def add_log(self, run_id: str, name: str, path: str) -> None:
        """Index log file ``path`` under ``name`` (replacing an earlier one of that name)."""
        key = _int_id(run_id)

        def write(conn: Connection) -> None:
            conn.execute(
                delete(run_logs).where(and_(run_logs.c.run_id == key, run_logs.c.name == name))
            )
            conn.execute(insert(run_logs).values(run_id=key, name=name, path=path))

        self.store.write(write)

    def get(self, run_id: str) -> RunRecord | None:
        """The run ``run_id``, or None when there is no such run."""
        try:
            key = _int_id(run_id)
        except KeyError:
            return None
        with self.store.read() as conn:
            row = conn.execute(select(runs).where(runs.c.id == key)).first()
            if row is None:
                return None
            logs = conn.execute(
                select(run_logs.c.name, run_logs.c.path).where(run_logs.c.run_id == key)
            )
            return _record(row, {name: path for name, path in logs})

    def list(self, flt: RunFilter = RunFilter()) -> list[RunRecord]:
        """Runs matching ``flt``, newest first (without their log index)."""
        query = select(runs).order_by(runs.c.id.desc()).limit(max(1, min(flt.limit, 1000)))
        for column, value in (("kind", flt.kind), ("status", flt.status), ("repo", flt.repo),
                              ("branch", flt.branch), ("host", flt.host)):  # fmt: skip
            if value is not None:
                query = query.where(runs.c[column] == value)
        if flt.before is not None:
            query = query.where(runs.c.id < flt.before)
        with self.store.read() as conn:
            return [_record(row, {}) for row in conn.execute(query)]

    def request_cancel(self, run_id: str) -> RunRecord:
        """Ask the process running ``run_id`` to cancel it. Raises ``KeyError`` when there is
        no such run; a finished run is returned unchanged."""
        key = _int_id(run_id)

        def write(conn: Connection) -> None:
            conn.execute(
                update(runs).where(and_(runs.c.id == key, runs.c.status.in_(ACTIVE)))
                .values(cancel_requested=True)
            )  # fmt: skip

        self.store.write(write)
        record = self.get(run_id)
        if record is None:
            raise KeyError(run_id)
        return record

    def active_here(self) -> Sequence[RunRecord]:
        """Queued or running runs that a process of this host owns (for reaping interrupted
        ones); a run waiting in the shared queue has no owner and is not one of them."""
        query = select(runs).where(
            and_(runs.c.status.in_(ACTIVE), runs.c.host == this_host(), runs.c.owner.is_not(None))
        )
        with self.store.read() as conn:
            return [_record(row, {}) for row in conn.execute(query)]
