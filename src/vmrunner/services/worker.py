"""The worker: claims queued workflow runs from the shared queue and runs them in VMs.

A worker (``vmrunner worker``, or the local one of ``vmrunner serve``) claims up to its
capacity, each claim under a lease that it renews every third of the lease. For each
claimed item it fetches the repository at the commit (a cached bare mirror), writes the
event payload, and runs the workflow through the same engine as ``vmrunner run``, under
the run id the scheduler kept. Every write about an item carries the claim's fencing
token: a worker that lost its lease (it stalled, the database thought it dead) cannot
finish or report a run that someone else now holds.

Leases of workers that stopped heart-beating are expired by every worker and scheduler:
the run is failed with ``worker_lost`` (or queued again, ``requeue_lost`` times).

Draining (SIGTERM): no new claims; running runs finish, or are cancelled after the grace
period; then the worker leaves the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmrunner.errors import VmrunnerError
from vmrunner.github.repos import RepoCache
from vmrunner.procs import run_capture
from vmrunner.services.reporting import Reporter
from vmrunner.services.runrequest import RunRequest
from vmrunner.services.scheduler import NoReports, expire_leases, facts_of, jobs_of, unrun_document
from vmrunner.services.workflows import run_workflow
from vmrunner.store.owner import this_host
from vmrunner.store.queue import Queue, QueueItem
from vmrunner.store.waker import Waker
from vmrunner.store.workers import Workers, worker_id

log = logging.getLogger(__name__)


def default_capacity(cpus: int, memory_mib: int) -> int:
    """How many jobs this host runs at once by default: what its CPUs and 75% of its
    memory allow for VMs of ``cpus`` and ``memory_mib`` (at least one)."""
    host_cpus = os.cpu_count() or 1
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        pages = memory_mib * 1024 * 1024
    by_memory = int(pages * 0.75) // (max(memory_mib, 1) * 1024 * 1024)
    return max(1, min(host_cpus // max(cpus, 1) or 1, by_memory))


@dataclass
class Worker:
    """One worker process's claims; see the module's docstring."""

    services: Any
    repos: RepoCache
    reporter: Reporter | NoReports
    capacity: int
    factory: Any = None  # the VM factory (tests may give one); None: real VMs
    grace_s: float = 300.0
    id: str = field(default_factory=worker_id)
    held: dict[int, tuple[QueueItem, asyncio.Task[None]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.queue = Queue(self.services.store, lease_s=self.services.settings.lease_s)
        self.workers = Workers(self.services.store)
        self.freed = asyncio.Event()
        self.lost: set[int] = set()  # items whose lease this worker lost

    # -- the loop ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run until ``stop`` is set, then drain (see the module's docstring)."""
        await asyncio.to_thread(self.workers.register, self.id, this_host(), self.capacity)
        waker = Waker(self.services.store)
        beat = asyncio.ensure_future(self._heartbeats(stop))
        try:
            while not stop.is_set():
                claimed = await self._claim()
                if not claimed:
                    await self._idle(waker, stop)
        finally:
            await self._drain(beat)
            waker.close()
            with contextlib.suppress(VmrunnerError):
                await asyncio.to_thread(self.workers.remove, self.id)

    async def _claim(self) -> int:
        free = self.capacity - len(self.held)
        if free <= 0:
            return 0
        try:
            items = await asyncio.to_thread(self.queue.claim, self.id, free)
        except VmrunnerError as exc:
            log.warning("claim failed: %s", exc)
            return 0
        for item in items:
            self.held[item.id] = (item, asyncio.ensure_future(self._run_item(item)))
        return len(items)

    async def _idle(self, waker: Waker, stop: asyncio.Event) -> None:
        """Wait for work (a NOTIFY on PostgreSQL), a freed slot, or ``stop``."""
        self.freed.clear()
        waits = [asyncio.ensure_future(asyncio.to_thread(waker.wait, 1.0)),
                 asyncio.ensure_future(self.freed.wait()), asyncio.ensure_future(stop.wait())]  # fmt: skip
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits[1:]:
            w.cancel()

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        """Renew the leases held (a lost one is cancelled here: someone else holds it),
        keep the registry row fresh, and expire dead workers' leases."""
        period = max(0.5, self.services.settings.lease_s / 3)
        while True:
            held = [(i, item.fence) for i, (item, _) in self.held.items()]
            try:
                lost = await asyncio.to_thread(self.queue.renew, self.id, held)
                await asyncio.to_thread(
                    self.workers.heartbeat, self.id, len(self.held), stop.is_set()
                )
                await asyncio.to_thread(expire_leases, self.services, self.queue, self.reporter)
            except VmrunnerError as exc:  # the database is briefly gone: keep going
                log.warning("heartbeat failed: %s", exc)
                lost = set()
            for item_id in lost & set(self.held):
                log.warning("lost the lease of queue item %s: stopping its run", item_id)
                self.lost.add(item_id)
                self.held[item_id][1].cancel()
            await asyncio.sleep(period)

    async def _drain(self, beat: asyncio.Future[None]) -> None:
        tasks = [task for _, task in self.held.values()]
        if tasks:
            log.info("draining: waiting up to %s s for %d run(s)", self.grace_s, len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=self.grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat

    # -- one run ----------------------------------------------------------------------------
    async def _run_item(self, item: QueueItem) -> None:
        try:
            document, jobs = await self._execute(item)
            await self._settle(item, "done", document, jobs)
        except asyncio.CancelledError:
            if item.id in self.lost:  # another worker may hold it now: write nothing
                log.warning(
                    "run %s (queue item %s) stopped: its lease was lost", item.run_id, item.id
                )
            else:  # drained past the grace period: the run kept itself as cancelled
                await asyncio.shield(self._settle_kept(item, "cancelled"))
        except Exception as exc:  # a harness failure: the run ends error, saying so
            log.exception("run %s (queue item %s) failed in the harness", item.run_id, item.id)
            await self._settle_kept(item, "done", f"the worker could not run it: {exc}")
        finally:
            self.held.pop(item.id, None)
            self.lost.discard(item.id)
            self.freed.set()

    async def _settle(
        self, item: QueueItem, state: str, document: dict[str, Any], jobs: list[tuple[str, str]]
    ) -> None:
        """Finish the item (fenced) and report the run's result; nothing when the fence
        moved on (someone else holds the item now)."""
        if await asyncio.to_thread(self.queue.finish, item.id, item.fence, state):
            await asyncio.to_thread(self.reporter.finished, facts_of(item), document, jobs)
        else:
            log.warning("queue item %s moved on while it ran: not reported", item.id)

    async def _settle_kept(self, item: QueueItem, state: str, error: str = "") -> None:
        """Settle ``item`` with the document its run kept; with ``error``, a run left
        active is first kept as ``error`` (a ``harness`` error saying ``error``)."""
        record = await asyncio.to_thread(self.services.runs.get, item.run_id)
        if record is None:
            return
        document = dict(record.document or {})
        if record.active and error:
            document = unrun_document(item.run_id, "error", "harness", error, item.created_at)
            await asyncio.to_thread(self.services.runs.finish, item.run_id, "error", document)
        await self._settle(item, state, document, jobs_of(record.request))

    async def _execute(self, item: QueueItem) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Run ``item``'s workflow under its kept run id; its final document and jobs."""
        handle = await asyncio.to_thread(self.services.adopt, item.run_id)
        jobs = jobs_of(self.services.get(item.run_id).request)
        try:
            checkout = await asyncio.to_thread(self._checkout, item, handle.dir)
        except VmrunnerError as exc:
            why = f"cannot fetch {item.repo} at {item.sha}: {exc}"
            doc = unrun_document(item.run_id, "error", "harness", why, item.created_at)
            await asyncio.to_thread(self.services.runs.finish, item.run_id, "error", doc)
            return doc, jobs
        await asyncio.to_thread(self.reporter.started, facts_of(item), jobs, host=this_host())
        event_path = handle.dir / "event.json"
        event_path.write_text(json.dumps(dict(item.payload)))
        req = RunRequest(workdir=checkout, workflows=(checkout / item.workflow,),
                         event=item.event, event_path=event_path, triggered=True)  # fmt: skip
        outcome = await run_workflow(self.services, req, factory=self.factory, handle=handle)
        return outcome.document, jobs

    def _checkout(self, item: QueueItem, run_dir: Path) -> Path:
        """The repository at the item's commit, in the run's directory, on the branch the
        event names (so the run's git facts are the event's)."""
        sha = self.repos.fetch(item.repo, item.sha)
        dest = self.repos.checkout(item.repo, sha, run_dir / "checkout")
        if item.branch:
            status, _, err = run_capture(
                ["git", "-C", str(dest), "checkout", "-q", "-B", item.branch, sha], timeout=60
            )
            if status != 0:
                log.warning("cannot name branch %s: %s", item.branch, err.decode(errors="replace"))
        return dest
