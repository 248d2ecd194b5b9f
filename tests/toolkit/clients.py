"""A toolkit service on the host's loopback for the real npm clients, in a thread of
the test process with its own event loop, and a way to run the node clients."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from vmrunner.toolkit.service import Identity, ToolkitService

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE.parent / "node" / "node_modules"
NODE = shutil.which("node") or "/usr/bin/node"


class Running:
    """A started :class:`ToolkitService` served by a loop in a background thread."""

    def __init__(self, service: ToolkitService) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(service.start())

    def call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.port}/"

    def env(self, job: str, tmp: Path) -> dict[str, str]:
        """A job's environment as GitHub sets it, for a node client."""
        (tmp / "runner-temp").mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ACTIONS_", "GITHUB_"))}
        return {**base, **self.service.job_env(job, self.url), "NODE_PATH": str(NODE_MODULES),
                "GITHUB_WORKSPACE": str(tmp), "RUNNER_TEMP": str(tmp / "runner-temp")}  # fmt: skip

    def close(self) -> None:
        self.call(self.service.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def node(script: str, args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run a client script; its JSON result (the test fails with its stderr otherwise)."""
    proc = subprocess.run([NODE, str(HERE / script), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def node_fails(script: str, args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run a client script that must fail; its stderr."""
    proc = subprocess.run([NODE, str(HERE / script), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def start(run: str = "run1", ref: str = "refs/heads/main", **kw: Any) -> Running:
        identity = Identity("owner/repo", ref, kw.pop("default_ref", "refs/heads/main"))
        svc = ToolkitService(tmp_path / run, tmp_path / "cache", identity, **kw)
        started.append(Running(svc))
        return started[-1]

    yield start
    for r in started:
        r.close()
