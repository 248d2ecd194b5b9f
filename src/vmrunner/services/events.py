"""One stream of typed events for every kind of run: what the CLI renders, what the
run's live log keeps (``output.log``), and later what the API serves as server-sent
events.

An :class:`Event` is one of: ``run`` (status changed), ``job`` and ``step`` (started or
finished, with a status), ``phase`` (a systest phase), ``log`` (a line of output, with
its stream), ``group`` (a ``::group::`` opened or closed), ``annotation`` and
``message`` (vmrunner speaking). Sinks are plain callables; :class:`EventReporter`
turns the workflow engine's reporter calls into events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

EventType = Literal["run", "job", "step", "phase", "log", "group", "annotation", "message"]


@dataclass(frozen=True)
class Event:
    """Something that happened in a run. Fields that do not apply are None."""

    type: EventType
    text: str = ""
    job: str | None = None
    step: str | None = None
    phase: str | None = None
    stream: str | None = None
    status: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


Sink = Callable[[Event], None]


def fan_out(sinks: Iterable[Sink]) -> Sink:
    """One sink that feeds each of ``sinks`` in order."""
    targets = list(sinks)

    def emit(event: Event) -> None:
        for sink in targets:
            sink(event)

    return emit


def log_line(event: Event) -> str:
    """How an event reads in a run's live log (one line, no colour)."""
    where = f"[{event.job}] " if event.job else (f"[{event.phase}] " if event.phase else "")
    if event.type == "log":
        return f"{where}{event.text}"
    if event.type in ("job", "step", "phase", "run"):
        name = event.step or event.job or event.phase or "run"
        return (
            f"{where}== {event.type} {name}: {event.status}{' ' + event.text if event.text else ''}"
        )
    if event.type == "group":
        return f"{where}{'▼ ' + event.text if event.text else '▲'}"
    if event.type == "annotation":
        return f"{where}{event.status}: {event.text}"
    return f"{where}vmrunner: {event.text}"


class LogFile:
    """A sink that appends every event to a run's live log, flushed per line, so that
    ``vmrunner runs logs --follow`` in another process sees it at once."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("a", encoding="utf-8", errors="replace")
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self._fh.closed:
                return
            self._fh.write(log_line(event) + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class EventReporter:
    """The workflow engine's ``Reporter`` as events on ``sink``."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def job_started(self, job: str) -> None:
        self.sink(Event("job", job=job, status="started"))

    def step_started(self, job: str, step: str) -> None:
        self.sink(Event("step", job=job, step=step, status="started"))

    def line(self, job: str, text: str, stream: str) -> None:
        self.sink(Event("log", text, job=job, stream=stream))

    def group(self, job: str, title: str | None) -> None:
        self.sink(Event("group", title or "", job=job))

    def annotation(self, job: str, note: Any) -> None:
        where = f" ({note.file}:{note.line})" if note.file else ""
        self.sink(Event("annotation", f"{note.message}{where}", job=job, status=note.level))

    def step_finished(self, job: str, step: Any) -> None:
        data = {"outcome": step.outcome, "conclusion": step.conclusion,
                "timed_out": step.timed_out, "duration_s": step.duration_s}  # fmt: skip
        self.sink(Event("step", job=job, step=step.name, status=step.conclusion, data=data))

    def job_finished(self, job: str, entry: Any) -> None:
        self.sink(Event("job", job=job, status=entry.status))

    def message(self, text: str) -> None:
        self.sink(Event("message", text))
