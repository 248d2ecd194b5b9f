"""The scheduler: kept webhook deliveries become queued workflow runs.

For each delivery ``received`` (kept by ``POST /webhook``), the scheduler claims it,
finds the workflows it triggers at its commit (:func:`services.dispatch.plan_delivery`),
and for each one keeps a run (kind ``workflow``, ``queued``, owned by no process) and
a queue item in its concurrency group; GitHub hears ``pending`` for every job. An older
pending run of the same group is cancelled (and reported cancelled). A workflow file that
cannot be loaded is reported as an ``error`` naming the file and line.

Processing is idempotent per delivery: a scheduler killed half-way leaves the delivery
``processing``; the next one takes it over and skips the workflows already queued.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select

from vmrunner.config import Settings
from vmrunner.errors import ConfigError, VmrunnerError
from vmrunner.github.reports import ItemFacts
from vmrunner.github.repos import FetchError, RepoCache
from vmrunner.results.envelope import envelope
from vmrunner.services.dispatch import DeliveryPlan, WorkUnit, plan_delivery
from vmrunner.services.reporting import Reporter
from vmrunner.store.deliveries import Delivery, DeliveryStore
from vmrunner.store.models import deliveries, queue
from vmrunner.store.owner import this_host
from vmrunner.store.queue import ItemSpec, Queue, QueueItem
from vmrunner.store.runs import RunStore

log = logging.getLogger(__name__)
POLL_S = 1.0
FETCH_RETRY_S = 600.0
"""A delivery whose repository cannot be fetched (the git server is away) is tried
again on every pass for this long after it arrived, then ends ``error``."""


def facts_of(item: QueueItem) -> ItemFacts:
    """What the reports about a queued run need."""
    return ItemFacts(item.repo, item.sha, item.workflow, item.workflow_name, item.run_id)


def jobs_of(request: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (id, name) of the jobs of a queued run, as its kept request lists them."""
    return [(str(job), str(name)) for job, name in request.get("jobs", [])]


class NoReports:
    """The reporter when no GitHub credentials are set: nothing is reported."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *_a, **_k: []


def unrun_document(run_id: str, status: str, kind: str, why: str, since: float) -> dict[str, Any]:
    """The result of a queued run that never ran to its end: superseded or cancelled
    (status ``cancelled``, error kind ``cancelled``), its worker lost (status ``error``,
    error kind ``worker_lost``), or its commit not fetched (``error``, ``harness``)."""
    doc = envelope("workflow", run_id, status, since, time.time(), accel=None, host=this_host(),
                   errors=[{"kind": kind, "message": why}])  # fmt: skip
    doc.update({"jobs": [], "trigger": {}})
    return doc


def report_mode(settings: Settings) -> str:
    """``app`` (check runs), ``token`` (commit statuses) or ``none`` (nothing reported)."""
    if settings.github_app_id:
        if not settings.github_app_private_key_file:
            raise ConfigError("github_app_id is set but github_app_private_key_file is not")
        return "app"
    return "token" if settings.github_token else "none"


def reporter(services: Any) -> Reporter | NoReports:
    """Where reports go: the outbox (statuses or check runs), or nowhere without GitHub
    credentials."""
    settings = services.settings
    mode = report_mode(settings)
    if mode == "none":
        return NoReports()
    return Reporter(services.store, "app" if mode == "app" else "token", settings.public_url)


def github_client(settings: Settings) -> Any:
    """The GitHub client of the settings (None when nothing is reported)."""
    from vmrunner.github.client import GitHubClient

    mode = report_mode(settings)
    if mode == "none":
        return None
    key = ""
    if mode == "app":
        try:
            key = Path(settings.github_app_private_key_file).read_text()
        except OSError as exc:
            raise ConfigError(f"github_app_private_key_file: {exc}") from exc
    return GitHubClient(settings.github_api_url, token=settings.github_token,
                        app_id=settings.github_app_id, private_key=key)  # fmt: skip


def repo_cache(settings: Settings, client: Any = None) -> RepoCache:
    """Where repositories are fetched from; in App mode (``client`` given) with an
    installation token of each repository."""
    if client is not None and report_mode(settings) == "app":
        return RepoCache(settings.cache_dir, settings.github_git_url, client.git_token)
    return RepoCache(settings.cache_dir, settings.github_git_url, settings.github_token)


class Scheduler:
    """Turns deliveries into queued runs; see the module's docstring."""

    def __init__(self, services: Any, repos: RepoCache, reporter: Reporter | NoReports) -> None:
        self.services = services
        self.repos = repos
        self.reporter = reporter
        self.deliveries = DeliveryStore(services.store)
        self.queue = Queue(services.store, lease_s=services.settings.lease_s)
        self.runs = RunStore(services.store)
        self._tidied = 0.0  # when claims of dead processes and expired leases were last looked at

    # -- one pass ----------------------------------------------------------------------------
    def process_once(self, limit: int = 20) -> int:
        """Process up to ``limit`` received deliveries; how many were processed. Claims
        of dead processes and expired leases are looked at once per :data:`POLL_S` (a
        burst of deliveries wakes the scheduler for each; those writes need not follow)."""
        if time.monotonic() - self._tidied >= POLL_S:
            self._tidied = time.monotonic()
            self.deliveries.reclaim()
            expire_leases(self.services, self.queue, self.reporter)
        claimed = self.deliveries.claim(limit)
        for delivery in claimed:
            self.process(delivery)
        return len(claimed)

    def process(self, delivery: Delivery) -> None:
        """Plan one claimed delivery and queue what it triggers; never raises for a bad
        delivery (it ends ``error`` with the reason)."""
        try:
            payload = json.loads(delivery.payload)
            plan = plan_delivery(delivery.event, payload, self.repos)
        except FetchError as exc:  # the git server is away: try again, for a while
            if time.time() - delivery.received_at < FETCH_RETRY_S:
                log.warning("delivery %s: %s (will retry)", delivery.id, exc)
                self.deliveries.set_status(delivery.id, "received", f"retrying: {exc}"[:2000])
                return
            self.deliveries.set_status(delivery.id, "error", str(exc)[:2000])
            return
        except (VmrunnerError, ValueError) as exc:
            log.warning("delivery %s: %s", delivery.id, exc)
            self.deliveries.set_status(delivery.id, "error", str(exc)[:2000])
            return
        if plan.ignored is not None:
            self.deliveries.set_status(delivery.id, "ignored", plan.ignored)
            return
        for error in plan.errors:
            facts = ItemFacts(plan.repo, plan.sha, error.workflow, error.workflow)
            self.reporter.errors(facts, error.message, line=error.line)
        done = self._queued_workflows(delivery.id) | self._ran_at_commit(delivery, plan)
        runs = [self._enqueue(delivery, plan, u) for u in plan.units if u.workflow not in done]
        note = f"{len(plan.units)} workflow(s) queued: {', '.join(runs) or 'already queued'}"
        if not plan.units:
            note = "no workflow triggered" + "".join(
                f"; {wf}: {why}" for wf, why in plan.not_triggered
            )
        self.deliveries.set_status(delivery.id, "processed", note[:2000])

    def _queued_workflows(self, delivery_id: str) -> set[str]:
        return {item.workflow for item in self.queue.by_delivery(delivery_id)}

    def _ran_at_commit(self, delivery: Delivery, plan: DeliveryPlan) -> set[str]:
        """GitHub sends an App both a ``push`` and a ``check_suite`` ``requested`` for one
        push: for either, the workflows the other one already queued at this commit and
        branch (a re-request, or another push, runs again)."""
        other = {"push": "check_suite", "check_suite": "push"}.get(delivery.event)
        if other is None or delivery.action == "rerequested":
            return set()
        with self.services.store.read() as conn:
            rows = conn.execute(
                select(queue.c.workflow, deliveries.c.action)
                .join(deliveries, deliveries.c.id == queue.c.delivery_id)
                .where(and_(queue.c.repo == plan.repo, queue.c.sha == plan.sha,
                            queue.c.branch == plan.branch, deliveries.c.event == other))
            ).all()  # fmt: skip
        return {workflow for workflow, action in rows if action != "rerequested"}

    def _enqueue(self, delivery: Delivery, plan: DeliveryPlan, unit: WorkUnit) -> str:
        return queue_workflow(self.services, self.reporter, plan, unit, "webhook", delivery.id)

    # -- the loop ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Process deliveries until ``stop``: at once when ``wake`` is set (a delivery was
        kept by this process), else every :data:`POLL_S` (deliveries kept by others)."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.process_once)
            except VmrunnerError as exc:  # the database is briefly gone: try again
                log.warning("scheduler pass failed: %s", exc)
            wake.clear()
            waiters = [asyncio.ensure_future(e.wait()) for e in (stop, wake)]
            await asyncio.wait(waiters, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()


def _request(
    plan: DeliveryPlan, unit: WorkUnit, source: str, delivery_id: str | None
) -> Mapping[str, Any]:
    """What is kept as the run's request (shown by ``runs show``; never a secret)."""
    request: dict[str, Any] = {
        "source": source, "event": plan.event, "repo": plan.repo, "ref": plan.ref,
        "sha": plan.sha, "workflows": [unit.workflow], "group": unit.group,
        "jobs": [list(job) for job in unit.jobs],
    }  # fmt: skip
    if delivery_id is not None:
        request["delivery"] = delivery_id
    return request


def queue_workflow(
    services: Any, rep: Reporter | NoReports, plan: DeliveryPlan, unit: WorkUnit, source: str,
    delivery_id: str | None = None,
) -> str:  # fmt: skip
    """Keep a run of ``unit`` (``queued``, owned by no process) and queue it in its
    concurrency group, scoped per repository; its id. ``source``: webhook or api."""
    request = _request(plan, unit, source, delivery_id)
    run_id = RunStore(services.store).create(
        "workflow", request, title=f"{plan.event} {plan.repo} {unit.workflow_name}",
        repo=plan.repo, branch=plan.branch, sha=plan.sha, queued=True,
    )  # fmt: skip
    spec = ItemSpec(
        run_id=run_id, repo=plan.repo, sha=plan.sha, ref=plan.ref, branch=plan.branch,
        workflow=unit.workflow, workflow_name=unit.workflow_name, event=plan.event,
        payload=plan.payload, group=f"{plan.repo}:{unit.group}",  # groups are per repository
        cancel_in_progress=unit.cancel_in_progress, delivery_id=delivery_id,
    )  # fmt: skip
    return enqueue_run(services, rep, spec, list(unit.jobs))


def enqueue_run(
    services: Any, rep: Reporter | NoReports, spec: ItemSpec, jobs: list[tuple[str, str]]
) -> str:
    """Queue the kept run ``spec.run_id``: GitHub hears ``pending`` for its ``jobs``; an
    older pending run of its group ends ``cancelled`` (and is reported so)."""
    enqueued = Queue(services.store, lease_s=services.settings.lease_s).enqueue(spec)
    rep.queued(facts_of(enqueued.item), jobs)
    for old in enqueued.superseded:
        why = f"cancelled: run {spec.run_id} is newer in concurrency group {old.group!r}"
        runs = RunStore(services.store)
        runs.finish(old.run_id, "cancelled",
                    unrun_document(old.run_id, "cancelled", "cancelled", why, old.created_at))  # fmt: skip
        rep.cancelled(facts_of(old), jobs_of(runs.get(old.run_id).request), why)  # type: ignore[union-attr]
    return spec.run_id


def expire_leases(services: Any, queue: Queue, reporter: Reporter | NoReports) -> int:
    """Expire the leases of workers that stopped heart-beating: each lost run ends
    ``error`` (``worker_lost``) and is reported; a requeued one waits again. How many."""
    expired = queue.expire(requeue_max=services.settings.requeue_lost)
    runs = RunStore(services.store)
    for item in expired.lost:
        why = (f"worker_lost: worker {item.lease_owner} stopped renewing its lease "
               f"({services.settings.lease_s:g} s) while running this run")  # fmt: skip
        status, kind = "error", "worker_lost"
        before = runs.get(item.run_id)
        if before is not None and before.cancel_requested:  # it was being cancelled anyway
            status, kind, why = "cancelled", "cancelled", f"cancelled; its {why}"
        since = item.claimed_at or item.created_at
        if before is not None and before.active:  # a result the worker kept stays
            runs.finish(item.run_id, status, unrun_document(item.run_id, status, kind, why, since))
        record = runs.get(item.run_id)
        if record is not None:
            reporter.finished(facts_of(item), dict(record.document or {}), jobs_of(record.request))
    for item in expired.requeued:
        runs.requeue(item.run_id)
    return len(expired.lost) + len(expired.requeued)


def cancel_queued(services: Any, run_id: str) -> bool:
    """Cancel run ``run_id`` if it waits in the shared queue (no worker holds it): it
    ends ``cancelled`` now and GitHub hears so. False when it is not waiting there."""
    item = Queue(services.store).cancel_run(run_id)
    if item is None:
        return False
    why = "cancelled on request ('vmrunner runs cancel') before a worker took it"
    RunStore(services.store).finish(
        run_id, "cancelled", unrun_document(run_id, "cancelled", "cancelled", why, item.created_at)
    )
    jobs = jobs_of(RunStore(services.store).get(run_id).request)  # type: ignore[union-attr]
    reporter(services).cancelled(facts_of(item), jobs, why)
    return True
