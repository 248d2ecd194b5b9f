"""One run's toolkit services: start, issue job tokens and environments, stop.

:class:`ToolkitService` serves the artifact and cache services of :mod:`.http` for one
run, on a Unix socket in a private directory (:mod:`.sockdir`; the socket mode 0600: no
TCP port on the host at all, so neither the host's loopback nor another run's VMs can
reach it) or, for tests, on a TCP address. Each job gets its own token
(:func:`.tokens.issue`) and the environment GitHub sets (:meth:`ToolkitService.job_env`);
its VM reaches the socket through the forward of :mod:`.tunnel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from vmrunner.toolkit.artifacts import DEFAULT_MAX_SIZE, ArtifactStore
from vmrunner.toolkit.cachestore import DEFAULT_LIMIT, CacheStore
from vmrunner.toolkit.http import Keys, ToolkitApp
from vmrunner.toolkit.tokens import Claims, cache_scopes, issue

TOKEN_TTL = 24 * 3600.0


@dataclass(frozen=True)
class Identity:
    """Whose caches a run reads and writes: the repository, the run's ref
    (``refs/heads/x``), the default branch's ref and a pull request's base ref."""

    repo: str
    ref: str
    default_ref: str | None = None
    base_ref: str | None = None


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the run's process keeps its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ToolkitService:
    """The artifact and cache services of one run (an async context manager)."""

    def __init__(
        self, run_dir: Path, cache_root: Path, identity: Identity, *,
        artifact_limit: int = DEFAULT_MAX_SIZE, cache_limit: int = DEFAULT_LIMIT,
    ) -> None:  # fmt: skip
        self.identity = identity
        self.keys = Keys(secrets.token_bytes(32))
        self.run_backend_id = str(uuid.uuid4())
        self.artifacts = ArtifactStore(run_dir, artifact_limit)
        self.cache = CacheStore(cache_root, identity.repo, cache_limit)
        self.app = ToolkitApp(self.keys, self.artifacts, self.cache)
        self.socket_path: Path | None = None
        self.port: int | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    def token(self, job: str, ttl: float = TOKEN_TTL) -> str:
        """The ``ACTIONS_RUNTIME_TOKEN`` of job instance ``job`` (any unique label)."""
        job_id = str(uuid.uuid5(uuid.UUID(self.run_backend_id), job))
        i = self.identity
        scopes = cache_scopes(i.ref, i.default_ref, i.base_ref)
        return issue(
            self.keys.secret, Claims(self.run_backend_id, job_id, scopes, time.time() + ttl)
        )

    def job_env(self, job: str, base_url: str) -> dict[str, str]:
        """The variables GitHub sets for the toolkit, the services at ``base_url``."""
        url = base_url.rstrip("/") + "/"
        return {
            "ACTIONS_RUNTIME_URL": url, "ACTIONS_RESULTS_URL": url, "ACTIONS_CACHE_URL": url,
            "ACTIONS_CACHE_SERVICE_V2": "true", "ACTIONS_RUNTIME_TOKEN": self.token(job),
        }  # fmt: skip

    async def start(
        self, *, uds: Path | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """Listen on the Unix socket ``uds`` (created 0600) or, without it, on ``host``:``port``
        (0: any free port, see :attr:`port`), and serve until :meth:`stop`."""
        sock = _unix_socket(uds) if uds is not None else _tcp_socket(host, port)
        self.socket_path = uds
        self.port = None if uds is not None else int(sock.getsockname()[1])
        config = uvicorn.Config(self.app.app, log_config=None, access_log=False, lifespan="off",
                                log_level="warning", timeout_keep_alive=30)  # fmt: skip
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the toolkit service stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving (open connections are closed) and remove the socket."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
        self._server = self._task = None

    async def __aenter__(self) -> ToolkitService:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


def _unix_socket(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(64)
    return sock


def _tcp_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    return sock
