"""``Services``: the store, every run's life cycle, and the queries on kept runs.

A run is written ``queued`` the moment it is accepted, ``running`` when its body starts,
then its final status with its result document. While it runs, a watcher polls the
store once a second: a ``cancel`` from any process (or host sharing the database)
cancels the body, and the run ends ``cancelled`` with the document so far. A run whose
process died (``kill -9``) is marked ``error`` ("interrupted") by the next start on the
same host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmrunner.config import Settings
from vmrunner.errors import RunNotFoundError, VmrunnerError
from vmrunner.logs import bind
from vmrunner.results import interrupted
from vmrunner.store.concurrency import ConcurrencyStore
from vmrunner.store.engine import Store, open_store
from vmrunner.store.owner import owner_alive, this_host, this_owner
from vmrunner.store.runs import RunFilter, RunRecord, RunStore

__all__ = ["RunFilter", "RunHandle", "RunRecord", "Services"]

log = logging.getLogger(__name__)
WATCH_INTERVAL_S = 1.0
OUTPUT_LOG = "output.log"
Fallback = Callable[[str, str], dict[str, Any]]


@dataclass
class RunHandle:
    """A run being executed: its id, directory and live log, for the kind's body."""

    id: str
    dir: Path
    services: Services
    cancel_requested: bool = False
    log_names: dict[str, Path] = field(default_factory=dict)

    @property
    def output_log(self) -> Path:
        return self.dir / OUTPUT_LOG

    def add_log(self, name: str, path: Path) -> None:
        """Index ``path`` as log ``name`` of this run."""
        self.services.runs.add_log(self.id, name, str(path))


def _empty_part(kind: str, request: Mapping[str, Any]) -> dict[str, Any]:
    """What a kind adds to an interrupted run's document (nothing ran)."""
    if kind == "exec":
        return {"argv": list(request.get("argv", [])), "image": request.get("image"),
                "exit_code": None, "signal": None, "timed_out": False, "exit_status": 125}  # fmt: skip
    if kind == "systest":
        from vmrunner.results.systest import PHASES, SystestResult

        phases = [SystestResult("x", "", "debian", 0.0).phase(p).to_dict() for p in PHASES]
        return {"config": str(request.get("config", "")), "flavor": request.get("flavor", "debian"),
                "failed_phase": None, "phases": phases, "artifacts": {}}  # fmt: skip
    return {"jobs": [], "trigger": {}}


class Services:
    """Everything the edges call. Opens the store on first use; ``close()`` releases it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Store | None = None
        self.last_run_id: str | None = None  # the newest run this process accepted

    # -- the store -------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            self.settings.ensure_dirs()
            self._store = open_store(self.settings.db_url)
        return self._store

    @property
    def runs(self) -> RunStore:
        return RunStore(self.store)

    @property
    def concurrency(self) -> ConcurrencyStore:
        return ConcurrencyStore(self.store)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def runs_dir(self) -> Path:
        return self.settings.state_dir / "runs"

    # -- start-up --------------------------------------------------------------------------
    def reap_interrupted(self) -> list[str]:
        """Mark every run of this host whose process is gone ``error`` (interrupted)."""
        reaped = []
        for rec in self.runs.active_here():
            if rec.owner and owner_alive(rec.owner):
                continue
            times = (rec.started_at or rec.created_at, time.time())
            why = "the vmrunner process running it ended without finishing it"
            doc = interrupted(
                rec.kind, rec.id, times, rec.host, why, _empty_part(rec.kind, rec.request)
            )
            self.runs.finish(rec.id, "error", doc)
            reaped.append(rec.id)
        return reaped

    # -- queries ---------------------------------------------------------------------------
    def get(self, run_id: str) -> RunRecord:
        """Run ``run_id``; raises ``RunNotFoundError`` when there is none."""
        rec = self.runs.get(run_id)
        if rec is None:
            raise RunNotFoundError(f"no run {run_id!r} (see 'vmrunner runs list')")
        return rec

    def list_runs(self, flt: RunFilter) -> list[RunRecord]:
        return self.runs.list(flt)

    def cancel(self, run_id: str) -> RunRecord:
        """Ask whichever process runs ``run_id`` to cancel it (returns at once). A run whose
        process is gone is marked interrupted now."""
        try:
            rec = self.runs.request_cancel(run_id)
        except KeyError:
            raise RunNotFoundError(f"no run {run_id!r} (see 'vmrunner runs list')") from None
        if rec.status == "queued" and rec.owner is None:  # waiting in the server's queue
            from vmrunner.services.scheduler import cancel_queued

            if cancel_queued(self, run_id):
                return self.get(run_id)
        if rec.active and rec.host == this_host() and not (rec.owner and owner_alive(rec.owner)):
            self.reap_interrupted()
            rec = self.get(run_id)
        return rec

    async def wait(self, run_id: str, timeout: float | None = None) -> RunRecord:
        """Wait until run ``run_id`` has a final status (or ``timeout`` seconds passed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rec = await asyncio.to_thread(self.get, run_id)
            if not rec.active or (deadline is not None and time.monotonic() >= deadline):
                return rec
            await asyncio.sleep(0.5)

    def log_files(self, run_id: str, job: str | None = None) -> list[tuple[str, Path]]:
        """The log files of a run, by name: the live ``output`` log, or with ``job`` the
        logs of the jobs whose name contains it."""
        rec = self.get(run_id)
        logs = dict(rec.logs)
        if rec.run_dir and "output" not in logs:
            logs["output"] = str(Path(rec.run_dir) / OUTPUT_LOG)
        if job is None:
            return [("output", Path(logs["output"]))] if "output" in logs else []
        found = [(n, Path(p)) for n, p in sorted(logs.items()) if n.startswith("job/") and job in n]
        if not found:
            names = ", ".join(n[4:] for n in sorted(logs) if n.startswith("job/")) or "none"
            raise RunNotFoundError(
                f"run {run_id} has no log of a job matching {job!r} (jobs: {names})"
            )
        return found

    # -- running ---------------------------------------------------------------------------
    def accept(
        self, kind: str, request: Mapping[str, Any], *, title: str,
        repo: str | None = None, branch: str | None = None, sha: str | None = None,
    ) -> RunHandle:  # fmt: skip
        """Keep a new run (status ``queued``) and make its directory and live log."""
        run_id = self.runs.create(kind, request, title=title, repo=repo, branch=branch, sha=sha)
        self.last_run_id = run_id
        return self._handle(run_id)

    def _handle(self, run_id: str) -> RunHandle:
        """The run's directory and live log, made here, and its handle."""
        run_dir = self.runs_dir() / run_id
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (run_dir / OUTPUT_LOG).touch(mode=0o600)
        self.runs.set_run_dir(run_id, str(run_dir))
        handle = RunHandle(run_id, run_dir, self)
        handle.add_log("output", handle.output_log)
        return handle

    def adopt(self, run_id: str) -> RunHandle:
        """A handle for run ``run_id``, kept earlier (``queued``) by another process -- the
        scheduler -- and executed here: its directory and live log are made on this host."""
        self.get(run_id)
        return self._handle(run_id)

    async def execute(
        self, handle: RunHandle, body: Callable[[RunHandle], Awaitable[dict[str, Any]]],
        fallback: Fallback,
    ) -> dict[str, Any]:  # fmt: skip
        """Run ``body`` for an accepted run and keep its result document.

        ``fallback(status, message)`` makes the document when ``body`` did not return
        one: cancelled (by ``cancel`` from anywhere: the run ends ``cancelled`` and its
        document is returned; by Ctrl-C/SIGTERM: kept, then ``CancelledError`` is
        re-raised) or a harness error (kept as ``error``, then re-raised)."""
        await asyncio.to_thread(self.runs.start, handle.id)
        bind(run=handle.id)
        task = asyncio.ensure_future(body(handle))
        watcher = asyncio.ensure_future(self._watch(handle, task))
        try:
            doc = await task
        except asyncio.CancelledError:
            await _settle(task)
            why = ("cancelled on request ('vmrunner runs cancel')" if handle.cancel_requested
                   else "cancelled (Ctrl-C or SIGTERM)")  # fmt: skip
            await self._keep(handle, fallback("cancelled", why))
            if handle.cancel_requested:
                _uncancel()
                return dict(self.get(handle.id).document or {})
            raise
        except VmrunnerError as exc:
            await self._keep(handle, fallback("error", str(exc)))
            raise
        finally:
            watcher.cancel()
        await self._keep(handle, doc)
        return doc

    async def _keep(self, handle: RunHandle, doc: dict[str, Any]) -> None:
        """Keep the final document: in the store, and as ``result.json`` in the run's directory."""
        doc["id"] = handle.id
        doc["host"] = this_host()

        def keep() -> None:
            if not self.runs.finish(handle.id, doc["status"], doc, owner=this_owner()):
                log.warning("run %s is no longer this process's: its result is not kept", handle.id)
                return
            (handle.dir / "result.json").write_text(json.dumps(doc, indent=2))

        await asyncio.shield(asyncio.to_thread(keep))

    async def _watch(self, handle: RunHandle, task: asyncio.Future[Any]) -> None:
        while not task.done():
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                wanted = await asyncio.to_thread(self.runs.heartbeat, handle.id)
            except VmrunnerError as exc:  # the database is briefly gone: try again
                log.warning("heartbeat of run %s failed: %s", handle.id, exc)
                continue
            if wanted:
                handle.cancel_requested = True
                task.cancel()
                return


async def _settle(task: asyncio.Future[Any]) -> None:
    """Let a cancelled body finish its cleanup (it may take a while: VM shutdown)."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.shield(task)


def _uncancel() -> None:
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        current.uncancel()
