"""``vmrunner serve`` and ``vmrunner worker`` as service functions.

``serve``: the HTTP server (webhook intake) on uvicorn, the scheduler (deliveries to
queued runs), the sender of reports to GitHub (the outbox), the reconciler of missed
deliveries (App mode), and unless ``workers == 0`` a local worker -- all in one event
loop. ``worker``: a worker alone, for another host sharing the database.

SIGTERM or SIGINT drains: the HTTP server stops taking requests, the worker claims
nothing new, running runs finish (cancelled after the grace period), then the process
exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from vmrunner.config import Settings
from vmrunner.errors import ConfigError
from vmrunner.services.reporting import Reconciler, Sender
from vmrunner.services.scheduler import Scheduler, github_client, repo_cache, report_mode, reporter
from vmrunner.services.worker import Worker, default_capacity

log = logging.getLogger(__name__)


def capacity_or_default(settings: Settings, capacity: int | None) -> int:
    if capacity is None:
        return default_capacity(settings.cpus, settings.memory_mib)
    if capacity < 1:
        raise ConfigError(f"--capacity must be at least 1, got {capacity}")
    return capacity


async def _until_signalled(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_worker(services: Any, capacity: int | None, grace_s: float = 300.0) -> None:
    """``vmrunner worker``: claim and run queued runs until SIGTERM/SIGINT, then drain."""
    repos = repo_cache(services.settings, github_client(services.settings))
    worker = Worker(services, repos, reporter(services),
                    capacity_or_default(services.settings, capacity), grace_s=grace_s)  # fmt: skip
    stop = asyncio.Event()
    signals = asyncio.ensure_future(_until_signalled(stop))
    log.info("worker %s: capacity %d", worker.id, worker.capacity)
    try:
        await worker.run(stop)
    finally:
        signals.cancel()


async def run_server(
    services: Any, secret: bytes, host: str, port: int, workers: int | None,
    grace_s: float = 300.0, ready: Callable[[int], Awaitable[None] | None] | None = None,
) -> None:  # fmt: skip
    """``vmrunner serve``; see the module's docstring. ``ready(port)`` is called once the
    socket listens (port 0 picks a free one)."""
    import uvicorn

    from vmrunner.api.app import create_app

    stop, wake = asyncio.Event(), asyncio.Event()
    app = create_app(services, secret, on_delivery=wake.set)
    server = _make_server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                    access_log=False, lifespan="off"), stop)  # fmt: skip
    tasks = [asyncio.ensure_future(t) for t in _background(services, stop, wake, workers, grace_s)]
    try:
        serving = asyncio.ensure_future(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if ready is not None and server.started:
            result = ready(server.servers[0].sockets[0].getsockname()[1])
            if asyncio.iscoroutine(result):
                await result
        await serving
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


def _background(
    services: Any, stop: asyncio.Event, wake: asyncio.Event, workers: int | None, grace_s: float
) -> list[Awaitable[None]]:
    settings = services.settings
    rep = reporter(services)
    client = github_client(settings)
    repos = repo_cache(settings, client)
    jobs: list[Awaitable[None]] = [Scheduler(services, repos, rep).run(stop, wake)]
    if client is not None:
        jobs.append(Sender(services.store, client).run(stop))
        if report_mode(settings) == "app":
            jobs.append(Reconciler(services.store, client).run(stop))
    if workers != 0:
        worker = Worker(services, repos, rep, capacity_or_default(settings, workers),
                        grace_s=grace_s)  # fmt: skip
        jobs.append(worker.run(stop))
    return jobs


def _make_server(config: Any, stop: asyncio.Event) -> Any:
    """uvicorn's server whose exit (SIGTERM/SIGINT) also sets ``stop``: the drain."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            stop.set()
            super().handle_exit(sig, frame)

    return Server(config)
