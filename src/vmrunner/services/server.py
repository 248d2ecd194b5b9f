"""``vmrunner serve`` and ``vmrunner worker`` as service functions.

``serve``: the HTTP server (webhook intake, the API, MCP, the dashboard) on uvicorn in
this process; the scheduler (deliveries to queued runs), the sender of reports to GitHub
(the outbox), the reconciler of missed deliveries (App mode) and, unless
``workers == 0``, a local worker in a background process it supervises
(:mod:`vmrunner.services.background`: acknowledging a webhook never waits for planning
or VMs). ``worker``: a worker alone, for another host sharing the database.

SIGTERM or SIGINT drains: the HTTP server stops taking requests, the background process
is told to drain (the worker claims nothing new, running runs finish, cancelled after the
grace period), then the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from vmrunner.config import Settings
from vmrunner.errors import ConfigError
from vmrunner.services.background import Background, child_argv
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

    stop = asyncio.Event()
    background = Background(child_argv(workers, grace_s, _verbosity()))
    app = create_app(services, secret, on_delivery=background.wake)
    server = _make_server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                    access_log=False, lifespan="off"), stop)  # fmt: skip
    supervisor = asyncio.ensure_future(background.supervise(stop))
    try:
        async with app.state.mcp.manager.run():  # /mcp's task group, for its whole life
            await _serve(server, ready)
    finally:
        stop.set()
        await asyncio.gather(supervisor, return_exceptions=True)
        await background.drain(grace_s)


async def run_background(services: Any, workers: int | None, grace_s: float) -> None:
    """``vmrunner serve-background``, serve's background process (see
    :mod:`vmrunner.services.background`): its jobs until SIGTERM/SIGINT or end of stdin."""
    stop, wake = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        if data:
            wake.set()
        else:  # the HTTP process is gone or closed the pipe: drain
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, readable)
    signals = asyncio.ensure_future(_until_signalled(stop))
    try:
        await asyncio.gather(*background_jobs(services, stop, wake, workers, grace_s))
    finally:
        signals.cancel()
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(fd)


def _verbosity() -> int:
    """This process's ``-v`` count, for its background process."""
    return {logging.DEBUG: 2, logging.INFO: 1}.get(logging.getLogger().level, 0)


async def _serve(server: Any, ready: Callable[[int], Awaitable[None] | None] | None) -> None:
    """Run uvicorn's ``server`` until it exits; ``ready(port)`` once it listens."""
    serving = asyncio.ensure_future(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if ready is not None and server.started:
        result = ready(server.servers[0].sockets[0].getsockname()[1])
        if asyncio.iscoroutine(result):
            await result
    await serving


def background_jobs(
    services: Any, stop: asyncio.Event, wake: asyncio.Event, workers: int | None, grace_s: float
) -> list[Awaitable[None]]:
    """The scheduler, the outbox sender, the reconciler (App mode) and, unless
    ``workers == 0``, a local worker: what ``serve``'s background process runs."""
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
            # uvicorn raises the signal again once it has stopped serving, which would end
            # the process before the drain; the drain ends it (exit status 0)
            self._captured_signals.clear()

    return Server(config)
