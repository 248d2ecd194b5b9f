"""``vmrunner serve`` acts on deliveries in a background process of its own (the
scheduler, the reports, the local worker), so that acknowledging a webhook never waits
for planning or VMs: the process is in its own session, replaced when it dies, drained
by SIGTERM of serve, and killed with serve's ``kill -9``. Real processes, no VM (the
server runs ``--workers 0``; the scheduler only plans and queues)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.live import SECRET, ApiServer
from server.origin import PASS, Origin, wait_for
from vmrunner.github.webhook import sign
from vmrunner.procs import pid_alive
from vmrunner.store.models import deliveries
from vmrunner.store.runs import RunFilter


def _background_of(pid: int) -> list[int]:
    """The ``serve-background`` children of process ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"serve-background" in argv:
            found.append(int(entry.name))
    return found


class Served:
    def __init__(self, tmp: Path) -> None:
        self.origin = Origin(tmp / "github", "octo/demo")
        self.api = ApiServer(tmp / "state", VMRUNNER_GITHUB_GIT_URL=self.origin.template)
        self.pushes = 0

    def push(self) -> str:
        """Commit and deliver a push; the delivery id."""
        self.pushes += 1
        sha = self.origin.commit({".github/workflows/pass.yml": PASS + f"# {self.pushes}\n"})
        body = json.dumps(self.origin.push(sha)).encode()
        delivery = f"d-{self.pushes}"
        answer = httpx.post(f"{self.api.url}/webhook", content=body, timeout=10, headers={
            "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(SECRET.encode(), body), "Content-Type": "application/json",
        })  # fmt: skip
        assert answer.status_code == 202, answer.text
        return delivery

    def status(self, delivery: str) -> str:
        with self.api.services.store.read() as conn:
            row = conn.execute(select(deliveries.c.status).where(deliveries.c.id == delivery))
            return str(row.scalar_one())

    def child(self, other_than: int | None = None) -> int:
        def one() -> int | None:
            kids = [p for p in _background_of(self.api.proc.pid) if p != other_than]
            return kids[0] if len(kids) == 1 else None

        return int(wait_for("the background process", one))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    try:
        yield s
    finally:
        s.api.stop()


def test_deliveries_are_acted_on_by_a_background_process_that_is_replaced_when_it_dies(
    served: Served,
) -> None:
    child = served.child()
    assert os.getsid(child) == child != os.getsid(served.api.proc.pid)
    first = served.push()
    wait_for("the first delivery processed", lambda: served.status(first) == "processed")
    os.kill(child, signal.SIGKILL)
    replacement = served.child(other_than=child)
    second = served.push()
    wait_for("the second delivery processed", lambda: served.status(second) == "processed")
    runs = served.api.services.list_runs(RunFilter(kind="workflow"))
    # no worker: both wait in one concurrency group, where the newer replaces the older
    assert [r.status for r in runs] == ["queued", "cancelled"]
    served.api.stop()
    assert served.api.proc.returncode == 0
    assert not pid_alive(replacement), "SIGTERM of serve drains and ends its background process"


def test_kill_9_of_serve_takes_its_background_process_with_it(served: Served) -> None:
    child = served.child()
    os.killpg(served.api.proc.pid, signal.SIGKILL)
    served.api.proc.wait(timeout=30)
    wait_for("the background process to die", lambda: not pid_alive(child), 30)
