"""A real ``vmrunner serve --workers 0`` for the dashboard tests, and runs driven from the
test process through the service layer: ``Services.accept`` keeps a workflow run,
``Services.execute`` runs a body that appends lines to the run's live log when the test
says so, and keeps its result document when told to finish. ``execute`` also watches
the store for a cancel requested from anywhere -- the dashboard's cancel button in the
server process -- and then ends the run ``cancelled``, as any vmrunner process would."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any

from api.live import ApiServer
from vmrunner.config import Settings
from vmrunner.results import ErrorEntry, JobEntry, RunDocument, StepEntry
from vmrunner.services.core import RunHandle, Services


class DashboardServer(ApiServer):
    """The server process (its own VMRUNNER_HOME, SQLite), a ``Services`` over the same
    store, and a read and a write token: the API tests' server (``tests/api/live.py``)."""


def workflow_doc(run_id: str, status: str, started: float, *, failing: str = "") -> dict[str, Any]:
    """A workflow result: job ``build`` with a passing step and, when ``failing`` is a
    log tail, a failed step ``run tests`` with that tail."""
    now = time.time()
    steps = [StepEntry("1", "check out", "success", "success", exit_code=0, duration_s=1.5,
                       command="git checkout")]  # fmt: skip
    if failing:
        steps.append(StepEntry("2", "run tests", "failure", "failure", exit_code=2,
                               duration_s=3.25, log_tail=failing, command="make test"))  # fmt: skip
    job = JobEntry("build", "build", "failure" if failing else "success", steps=tuple(steps),
                   duration_s=now - started)  # fmt: skip
    return RunDocument(run_id, "workflow", status, started, now, jobs=(job,)).to_dict()  # type: ignore[arg-type]


class DrivenRun:
    """A workflow run kept and executed by this process (its own ``Services`` over the
    server's store), in a thread with its own event loop: ``line(text)`` appends a line to its live log, ``finish(status, tail)`` ends it
    (``tail``: the failed step's log tail). ``result()`` waits for the kept document."""

    def __init__(self, settings: Settings, title: str, repo: str = "octo/demo") -> None:
        self.services = Services(settings)  # its own store handles: used from its thread
        self.handle: RunHandle = self.services.accept("workflow", {"workflows": []}, title=title,
                                                 repo=repo, branch="main")  # fmt: skip
        self.id = self.handle.id
        self.commands: queue.Queue[tuple[str, str, str]] = queue.Queue()
        self.started = time.time()
        self.document: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def line(self, text: str) -> None:
        self.commands.put(("line", text, ""))

    def finish(self, status: str = "success", tail: str = "") -> None:
        self.commands.put(("finish", status, tail))

    def result(self, timeout: float = 60.0) -> dict[str, Any]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"run {self.id} did not end"
        if self.error is not None:
            raise self.error
        assert self.document is not None
        return self.document

    def _main(self) -> None:
        try:
            self.document = asyncio.run(
                self.services.execute(self.handle, self._body, self._fallback)
            )
        except BaseException as exc:  # noqa: BLE001 -- reported by result()
            self.error = exc
        finally:
            self.services.close()

    async def _body(self, handle: RunHandle) -> dict[str, Any]:
        while True:
            try:
                what, a, b = self.commands.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.05)
                continue
            if what == "finish":
                return workflow_doc(handle.id, a, self.started, failing=b)
            with handle.output_log.open("a", encoding="utf-8") as f:
                f.write(a + "\n")

    def _fallback(self, status: str, message: str) -> dict[str, Any]:
        doc = workflow_doc(self.id, status, self.started)
        doc["errors"] = [ErrorEntry("cancelled", message).to_dict()]
        return doc
