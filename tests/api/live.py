"""A real ``vmrunner serve --workers 0`` on 127.0.0.1 for the API tests, with a read and a
write token, the store shared with the test process (SQLite file or PostgreSQL), and
helpers to keep runs in that store the way the service layer keeps them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from vmrunner.config import Settings, load_settings
from vmrunner.results import ExecDocument
from vmrunner.services.core import Services
from vmrunner.services.tokens import create_token

SECRET = "api-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    """The server process, its settings (for a ``Services`` of the test's own) and tokens."""

    def __init__(self, home: Path, db_url: str | None = None, **env: str) -> None:
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "VMRUNNER_HOME": str(home), "VMRUNNER_WEBHOOK_SECRET": SECRET,
                    "VMRUNNER_GITHUB_GIT_URL": f"file://{home}/git/{{owner}}/{{repo}}.git", **env}  # fmt: skip
        self.env.pop("VMRUNNER_DATABASE_URL", None)  # SQLite in the home, unless given
        if db_url:
            self.env["VMRUNNER_DATABASE_URL"] = db_url
        self.settings: Settings = load_settings(env=self.env)
        self.services = Services(self.settings)
        self.read = create_token(self.services, "reader", "read")[1]
        self.write = create_token(self.services, "writer", "write")[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmrunner", "serve", "--port", str(self.port), "--workers", "0"],
            env=self.env, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.communicate()[1].decode(errors="replace"))
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("the server never answered /healthz")

    def client(self, token: str | None) -> httpx.Client:
        """A client of the server, sending ``token`` (None: no Authorization header)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.services.close()

    # -- runs kept directly, as the service layer keeps them ---------------------------------
    def keep_exec(self, argv: list[str], status: str = "success", *, lines: int = 0,
                  repo: str | None = None, branch: str | None = None) -> str:  # fmt: skip
        """A finished exec run (its log ``lines`` lines long); its id."""
        handle = self.services.accept("exec", {"argv": argv}, title=" ".join(argv),
                                      repo=repo, branch=branch)  # fmt: skip
        handle.output_log.write_text("".join(f"line {n}\n" for n in range(1, lines + 1)))
        self.services.runs.start(handle.id)
        now = time.time()
        code = 0 if status == "success" else 1
        doc = ExecDocument(handle.id, status, now - 2, now, tuple(argv), "debian", accel="tcg",
                           exit_code=code, exit_status=code).to_dict()  # fmt: skip
        doc["host"] = "test-host"
        self.services.runs.finish(handle.id, status, doc)
        return handle.id

    def keep_running(self, argv: list[str]) -> Any:
        """A run that is running (owned by this test process); its handle."""
        handle = self.services.accept("exec", {"argv": argv}, title=" ".join(argv))
        self.services.runs.start(handle.id)
        return handle

    def finish(self, run_id: str, status: str = "success") -> None:
        now = time.time()
        doc = ExecDocument(run_id, status, now - 1, now, ("true",), "debian", accel="tcg",
                           exit_code=0, exit_status=0).to_dict()  # fmt: skip
        self.services.runs.finish(run_id, status, doc)


def sse_events(response: httpx.Response) -> Any:
    """The events of a server-sent event stream, as dicts (``event``, ``id``, ``data``)."""
    event: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                yield event
            event = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[field] = event[field] + "\n" + value if field in event else value
