"""Results back to GitHub: reports written to the outbox, a sender, a reconciler.

* :class:`Reporter` turns a run's life (queued, started, finished, cancelled, a workflow
  file that would not load) into outbox rows, in the caller's process, without I/O
  beyond the store: nothing waits for GitHub.
* :class:`Sender` delivers due rows: a commit status is POSTed; a check run is created
  by the first row of its key and PATCHed by the later ones (the id GitHub gave is kept
  in the row's ``result``). A 5xx, a timeout, a refused connection or a rate limit is
  retried with exponential back-off and jitter (capped at :data:`MAX_BACKOFF_S`), no
  earlier than ``Retry-After`` / ``x-ratelimit-reset`` says; a rate limit also holds every
  other row until then. Other 4xx answers are logged and the row is ``dead``.
* :class:`Reconciler` (App mode) asks GitHub every minute to redeliver webhook deliveries
  that failed and were never stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from vmrunner.github.client import GitHubClient, GitHubError
from vmrunner.github.reconcile import to_redeliver
from vmrunner.github.reports import ItemFacts, JobRef, Report, ReportBuilder
from vmrunner.store.engine import Store
from vmrunner.store.models import deliveries
from vmrunner.store.outbox import Outbox, OutboxRow

log = logging.getLogger(__name__)
BASE_BACKOFF_S = 2.0
MAX_BACKOFF_S = 600.0
RECONCILE_EVERY_S = 60.0
FIRST_LOOKBACK_S = 6 * 3600.0
"""How far back the reconciler's first pass after a start looks (later passes look back
to the previous pass, with a margin)."""


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jobs(jobs: Sequence[JobRef | tuple[str, str] | str]) -> list[JobRef]:
    """Jobs given as ``JobRef``, ``(id, name)`` pairs or bare ids."""
    out = []
    for job in jobs:
        if isinstance(job, JobRef):
            out.append(job)
        elif isinstance(job, str):
            out.append(JobRef(job, job))
        else:
            out.append(JobRef(str(job[0]), str(job[1])))
    return out


def _facts(item: ItemFacts | Mapping[str, Any]) -> ItemFacts:
    return item if isinstance(item, ItemFacts) else ItemFacts.from_mapping(item)


class Reporter:
    """Writes a run's reports to the outbox. ``mode`` is ``token`` (commit statuses) or
    ``app`` (check runs); ``public_url`` makes the details links. ``item`` is an
    :class:`ItemFacts` or a ``queue`` row mapping; ``jobs`` are ``JobRef``s, ``(id, name)``
    pairs or ids. Each call adds its rows in one transaction and returns their ids."""

    def __init__(self, store: Store, mode: str, public_url: str = "") -> None:
        if mode not in ("token", "app"):
            raise ValueError(f"unknown reporting mode {mode!r} (token or app)")
        self.outbox = Outbox(store)
        self.build = ReportBuilder("app" if mode == "app" else "token", public_url)

    def _add(self, reports: list[Report]) -> list[int]:
        return self.outbox.add(reports)

    def queued(self, item: ItemFacts | Mapping[str, Any], jobs: Sequence[Any]) -> list[int]:
        return self._add(self.build.queued(_facts(item), _jobs(jobs)))

    def started(
        self, item: ItemFacts | Mapping[str, Any], jobs: Sequence[Any], *, host: str = "",
        at: float | None = None,
    ) -> list[int]:  # fmt: skip
        when = _iso(time.time() if at is None else at)
        return self._add(self.build.started(_facts(item), _jobs(jobs), when, host))

    def finished(
        self, item: ItemFacts | Mapping[str, Any], document: Mapping[str, Any],
        jobs: Sequence[Any] = (),
    ) -> list[int]:  # fmt: skip
        """The final reports from the result ``document``; ``jobs`` that the document
        lacks are reported as not run (so none stays pending)."""
        return self._add(self.build.finished(_facts(item), document, _jobs(jobs)))

    def cancelled(
        self, item: ItemFacts | Mapping[str, Any], jobs: Sequence[Any], reason: str = "superseded"
    ) -> list[int]:
        return self._add(self.build.cancelled(_facts(item), _jobs(jobs), reason))

    def errors(
        self, item: ItemFacts | Mapping[str, Any], message: str, *, line: int | None = None,
        col: int | None = None,
    ) -> list[int]:  # fmt: skip
        """The report of a workflow file that could not be loaded (file and line)."""
        return self._add(self.build.errors(_facts(item), message, line, col))


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failure: 2, 4, 8 ... capped at
    :data:`MAX_BACKOFF_S`, times a jitter in [0.5, 1]."""
    base = min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2.0 ** max(0, min(attempts - 1, 20)))
    jitter = rng.random() if rng is not None else random.random()
    return base * (0.5 + 0.5 * jitter)


class Sender:
    """Sends the outbox's due rows through ``client`` (see the module docstring)."""

    def __init__(self, store: Store, client: GitHubClient, *, batch: int = 50) -> None:
        self.outbox = Outbox(store)
        self.client = client
        self.batch = batch
        self.paused_until = 0.0
        """No row is sent before this Unix time (a rate limit said so)."""

    def send_once(self, now: float | None = None) -> int:
        """Send every row due at ``now`` (default: the clock); the number GitHub took."""
        now = time.time() if now is None else now
        if now < self.paused_until:
            return 0
        rows = self.outbox.claim(now, self.batch)
        sent = 0
        for index, row in enumerate(rows):
            if self._send(row, now):
                sent += 1
            elif now < self.paused_until:  # rate limited: the rest waits as well
                self.outbox.postpone([r.id for r in rows[index + 1 :]], self.paused_until)
                break
        return sent

    def _send(self, row: OutboxRow, now: float) -> bool:
        try:
            result = self._deliver(row)
        except GitHubError as exc:
            self._failed(row, exc, now)
            return False
        self.outbox.mark_sent(row.id, result)
        return True

    def _deliver(self, row: OutboxRow) -> dict[str, Any]:
        if row.kind == "status":
            return self.client.create_status(row.repo, row.sha, row.body)
        if row.kind != "check_run":
            raise GitHubError(f"unknown outbox row kind {row.kind!r}", status=None, retryable=False)
        earlier = self.outbox.result_of(row.key)
        if earlier and earlier.get("id") is not None:
            update = {k: v for k, v in row.body.items() if k != "head_sha"}
            return self.client.update_check_run(row.repo, int(earlier["id"]), update)
        return self.client.create_check_run(row.repo, row.body)

    def _failed(self, row: OutboxRow, exc: GitHubError, now: float) -> None:
        if not exc.retryable:
            log.error("GitHub refused an outbox row; giving it up",
                      extra={"row": row.id, "key": row.key, "status": exc.status, "error": str(exc)})  # fmt: skip
            self.outbox.dead(row.id, str(exc))
            return
        next_at = now + backoff(row.attempts + 1)
        if exc.retry_at is not None:
            next_at = max(next_at, exc.retry_at) if not exc.rate_limited else exc.retry_at
        if exc.rate_limited:
            self.paused_until = max(self.paused_until, next_at)
        log.warning("GitHub call failed; retrying later",
                    extra={"row": row.id, "status": exc.status, "next_at": next_at, "error": str(exc)})  # fmt: skip
        self.outbox.retry(row.id, str(exc), next_at)

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0) -> None:
        """Send due rows until ``stop`` is set: again at once while rows go out, else
        every ``poll_s`` seconds. A store failure is logged and retried."""
        while not stop.is_set():
            try:
                sent = await asyncio.to_thread(self.send_once)
            except Exception:  # the store being away must not end the sender
                log.exception("outbox sender pass failed")
                sent = 0
            if sent == 0:
                try:
                    await asyncio.wait_for(stop.wait(), poll_s)
                except TimeoutError:
                    pass


class Reconciler:
    """Asks GitHub to redeliver missed webhook deliveries (App mode; a no-op with a
    token, which cannot list the App's deliveries)."""

    def __init__(self, store: Store, client: GitHubClient, *, max_redeliveries: int = 3) -> None:
        self.store = store
        self.client = client
        self.max_redeliveries = max_redeliveries
        self.last_pass: float | None = None

    def _known(self, guids: Sequence[str]) -> set[str]:
        with self.store.read() as conn:
            rows = conn.execute(select(deliveries.c.id).where(deliveries.c.id.in_(list(guids))))
            return {row[0] for row in rows}

    def run_once(self, now: float | None = None) -> list[int]:
        """One pass: list recent deliveries, redeliver the missed ones; their attempt ids.
        A redelivery GitHub refuses is logged and left to the next pass."""
        if not self.client.app:
            return []
        now = time.time() if now is None else now
        since = (
            now - FIRST_LOOKBACK_S
            if self.last_pass is None
            else self.last_pass - 2 * RECONCILE_EVERY_S
        )
        attempts = list(self.client.deliveries(since))
        chosen = to_redeliver(
            attempts, self._known([a.guid for a in attempts]), self.max_redeliveries
        )
        done = []
        for attempt_id in chosen:
            try:
                self.client.redeliver(attempt_id)
                done.append(attempt_id)
            except GitHubError as exc:
                log.warning("redelivery refused", extra={"delivery": attempt_id, "error": str(exc)})
        self.last_pass = now
        if done:
            log.info("asked GitHub to redeliver missed deliveries", extra={"ids": done})
        return done

    async def run(self, stop: asyncio.Event, every_s: float = RECONCILE_EVERY_S) -> None:
        """:meth:`run_once` every ``every_s`` seconds until ``stop`` is set (App mode)."""
        while self.client.app and not stop.is_set():
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:  # GitHub or the store away: try again next time
                log.exception("delivery reconciliation failed")
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
                pass
