"""The workflow part of a result document: ``jobs[]`` (one entry per job instance: each
matrix combination is its own entry) with their steps, and ``trigger``.

A workflow result is a tree of frozen dataclasses (:class:`RunDocument` at the top)
turned into JSON by ``to_dict()``, inside the shared envelope
(:mod:`vmrunner.results.envelope`). Pure code: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vmrunner.results.envelope import ErrorEntry, RunStatus, drop_none, envelope

JobStatus = Literal["success", "failure", "cancelled", "skipped"]
StepConclusion = Literal["success", "failure", "cancelled", "skipped"]
JOB_STATUSES: tuple[str, ...] = ("success", "failure", "cancelled", "skipped")


@dataclass(frozen=True)
class Annotation:
    """An ``::error``/``::warning``/``::notice`` a step printed."""

    level: str
    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return drop_none(self.__dict__)


@dataclass(frozen=True)
class StepEntry:
    """One step. ``outcome`` is before ``continue-on-error``, ``conclusion`` after."""

    id: str
    name: str
    outcome: StepConclusion
    conclusion: StepConclusion
    exit_code: int | None = None
    duration_s: float = 0.0
    log_tail: str = ""
    timed_out: bool = False
    outputs: Mapping[str, str] = field(default_factory=dict)
    annotations: tuple[Annotation, ...] = ()
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "command": self.command,
            "outcome": self.outcome,
            "conclusion": self.conclusion,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "log_tail": self.log_tail,
            "timed_out": self.timed_out,
            "outputs": dict(self.outputs),
            "annotations": [a.to_dict() for a in self.annotations],
        }


@dataclass(frozen=True)
class JobEntry:
    """One job instance. ``id`` is the job id; ``matrix`` its combination (empty when
    none). ``workflow`` is the file it comes from; ``name`` the display name."""

    id: str
    name: str
    status: JobStatus
    workflow: str = ""
    matrix: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    steps: tuple[StepEntry, ...] = ()
    duration_s: float = 0.0
    runs_on: str | None = None
    image: str | None = None
    summary: str = ""
    log: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None
    """Why a job was skipped without running (a ``runs-on`` label with no image)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "workflow": self.workflow,
            "matrix": dict(self.matrix),
            "outputs": dict(self.outputs),
            "steps": [s.to_dict() for s in self.steps],
            "duration_s": round(self.duration_s, 3),
            "runs_on": self.runs_on,
            "image": self.image,
            "summary": self.summary,
            "log": self.log,
            "env": dict(self.env),
            **({"reason": self.reason} if self.reason else {}),
        }


@dataclass(frozen=True)
class RunDocument:
    """A workflow run's result. ``trigger`` describes what started the run (event, ref,
    sha, the workflows that ran); it is free-form but always an object."""

    id: str
    kind: Literal["workflow"]
    status: RunStatus
    started_at: float
    finished_at: float
    accel: str | None = None
    errors: tuple[ErrorEntry, ...] = ()
    jobs: tuple[JobEntry, ...] = ()
    trigger: Mapping[str, Any] = field(default_factory=dict)
    host: str = ""
    learning: Mapping[str, Any] | None = None
    artifacts: tuple[Mapping[str, Any], ...] = ()
    """What the run's jobs uploaded (upload-artifact): name, size, digest, id."""

    @property
    def duration_s(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        doc = envelope(
            "workflow", self.id, self.status, self.started_at, self.finished_at,
            accel=self.accel, host=self.host, errors=[e.to_dict() for e in self.errors],
            learning=self.learning,
        )  # fmt: skip
        doc["trigger"] = dict(self.trigger)
        doc["jobs"] = [j.to_dict() for j in self.jobs]
        doc["artifacts"] = [dict(a) for a in self.artifacts]
        return doc
