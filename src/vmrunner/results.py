"""The result document: one envelope for workflow runs and system tests.

A result is a tree of frozen dataclasses (:class:`RunDocument` at the top) turned into
JSON by ``to_dict()``. :data:`RESULT_SCHEMA` is its JSON Schema (draft 2020-12), written
beside the dataclasses it describes; :func:`validate_result` checks a document against
it and :func:`render_text` makes the summary a person reads. The CLI's ``--json`` output,
the files under ``state_dir/runs/<id>/`` and any later API all come from the same object.

``kind`` says what the envelope carries: ``"workflow"`` has ``jobs[]`` (one entry per job
instance: each matrix combination is its own entry), ``"systest"`` has ``phases[]``.
Pure code: no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from jsonschema import Draft202012Validator

SCHEMA_VERSION = 1

RunStatus = Literal["success", "failure", "cancelled", "timeout", "error"]
JobStatus = Literal["success", "failure", "cancelled", "skipped"]
StepConclusion = Literal["success", "failure", "cancelled", "skipped"]
RUN_STATUSES: tuple[str, ...] = ("success", "failure", "cancelled", "timeout", "error")
JOB_STATUSES: tuple[str, ...] = ("success", "failure", "cancelled", "skipped")


def iso(timestamp: float) -> str:
    """A Unix time as an ISO 8601 UTC string with milliseconds."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


@dataclass(frozen=True)
class ErrorEntry:
    """Something that went wrong: ``kind`` is ``workflow`` (invalid input), ``job``,
    ``step``, ``annotation`` (an ``::error::`` command), ``timeout``, ``cancelled`` or
    ``harness`` (vmrunner itself failed). Location fields are set where they apply."""

    kind: str
    message: str
    job: str | None = None
    step: str | None = None
    file: str | None = None
    line: int | None = None
    col: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(self.__dict__)


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
        return _drop_none(self.__dict__)


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
        }


@dataclass(frozen=True)
class RunDocument:
    """The envelope. ``trigger`` describes what started the run (event, ref, sha, the
    workflows that ran); it is free-form but always an object."""

    id: str
    kind: Literal["workflow", "systest"]
    status: RunStatus
    started_at: float
    finished_at: float
    accel: str | None = None
    errors: tuple[ErrorEntry, ...] = ()
    jobs: tuple[JobEntry, ...] = ()
    trigger: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "id": self.id,
            "status": self.status,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_s": round(self.duration_s, 3),
            "accel": self.accel,
            "trigger": dict(self.trigger),
            "errors": [e.to_dict() for e in self.errors],
        }
        doc["jobs"] = [j.to_dict() for j in self.jobs]
        return doc


# ---- the JSON Schema ------------------------------------------------------------------

_STR = {"type": "string"}
_NUM = {"type": "number", "minimum": 0}
_OPT_INT = {"type": ["integer", "null"]}
_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
_JOB_STATUS = {"enum": list(JOB_STATUSES)}


def _obj(required: list[str], props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


_ANNOTATION = _obj(
    ["level", "message"],
    {"level": {"enum": ["error", "warning", "notice"]}, "message": _STR, "file": _STR,
     "line": {"type": "integer"}, "col": {"type": "integer"}, "title": _STR},
)  # fmt: skip
_ERROR = _obj(
    ["kind", "message"],
    {"kind": _STR, "message": _STR, "job": _STR, "step": _STR, "file": _STR,
     "line": {"type": "integer"}, "col": {"type": "integer"}},
)  # fmt: skip
_STEP = _obj(
    ["id", "name", "outcome", "conclusion", "exit_code", "duration_s", "log_tail"],
    {"id": _STR, "name": _STR, "outcome": _JOB_STATUS, "conclusion": _JOB_STATUS,
     "exit_code": _OPT_INT, "duration_s": _NUM, "log_tail": _STR, "timed_out": {"type": "boolean"},
     "outputs": _STRMAP, "annotations": {"type": "array", "items": _ANNOTATION}, "command": _STR},
)  # fmt: skip
_JOB = _obj(
    ["id", "name", "status", "matrix", "outputs", "steps"],
    {"id": _STR, "name": _STR, "status": _JOB_STATUS, "workflow": _STR,
     "matrix": {"type": "object"}, "outputs": _STRMAP, "steps": {"type": "array", "items": _STEP},
     "duration_s": _NUM, "runs_on": {"type": ["string", "null"]},
     "image": {"type": ["string", "null"]}, "summary": _STR, "log": {"type": ["string", "null"]},
     "env": _STRMAP},
)  # fmt: skip
_PHASE = _obj(
    ["name", "status", "duration_s"],
    {"name": _STR, "status": {"enum": ["passed", "failed", "skipped", "timeout"]},
     "duration_s": _NUM, "log_tail": _STR},
)  # fmt: skip
_TIME = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$",
}

RESULT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://vmrunner.invalid/schemas/result.json",
    "title": "vmrunner result",
    "description": "The result of a vmrunner workflow run (kind workflow, with jobs[]) "
    "or system test (kind systest, with phases[]).",
    "type": "object",
    "required": [
        "schema_version",
        "kind",
        "id",
        "status",
        "started_at",
        "finished_at",
        "duration_s",
        "accel",
        "errors",
    ],  # fmt: skip
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "kind": {"enum": ["workflow", "systest"]},
        "id": {"type": "string", "minLength": 1},
        "status": {"enum": list(RUN_STATUSES)},
        "started_at": _TIME,
        "finished_at": _TIME,
        "duration_s": _NUM,
        "accel": {"type": ["string", "null"]},
        "trigger": {"type": "object"},
        "errors": {"type": "array", "items": _ERROR},
        "jobs": {"type": "array", "items": _JOB},
        "phases": {"type": "array", "items": _PHASE},
        "learning": {"type": ["object", "null"]},
    },
    "allOf": [
        {
            "if": {"properties": {"kind": {"const": "workflow"}}},
            "then": {"required": ["jobs"], "not": {"required": ["phases"]}},
        },
        {
            "if": {"properties": {"kind": {"const": "systest"}}},
            "then": {"required": ["phases"], "not": {"required": ["jobs"]}},
        },
    ],
}


def _with_systest(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the system-test specifics (phase and error fields) to the systest branch."""
    from vmrunner.systest.result import SYSTEST_SCHEMA

    schema["allOf"][1]["then"] = {**schema["allOf"][1]["then"], "allOf": [SYSTEST_SCHEMA]}
    return schema


RESULT_SCHEMA = _with_systest(RESULT_SCHEMA)

_VALIDATOR = Draft202012Validator(RESULT_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_result(doc: Any) -> list[str]:
    """Every way ``doc`` departs from :data:`RESULT_SCHEMA`, as ``path: message`` lines;
    empty when it is valid."""
    problems = []
    for error in sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(map(str, e.path))):
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{path}: {error.message}")
    return problems


# ---- for people ------------------------------------------------------------------------


def _job_label(job: Mapping[str, Any]) -> str:
    return str(job.get("name") or job.get("id"))


def _failed_step(job: Mapping[str, Any]) -> str:
    for step in job.get("steps", []):
        if step.get("outcome") == "failure":
            extra = " (timed out)" if step.get("timed_out") else ""
            return f"{step.get('name')}{extra}"
    return ""


def render_text(doc: Mapping[str, Any]) -> str:
    """A plain-text summary table of a result document (as ``to_dict`` made it)."""
    rows = [("JOB", "STATUS", "TIME", "FAILED STEP")]
    for job in doc.get("jobs", []):
        rows.append(
            (_job_label(job), job["status"], f"{job.get('duration_s', 0):.1f}s", _failed_step(job))
        )
    for phase in doc.get("phases", []):
        rows.append((phase["name"], phase["status"], f"{phase.get('duration_s', 0):.1f}s", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for error in doc.get("errors", []):
        where = ":".join(str(error[k]) for k in ("file", "line") if k in error)
        owner = "/".join(str(error[k]) for k in ("job", "step") if k in error)
        prefix = " ".join(p for p in (where, owner) if p)
        lines.append(f"{error['kind']}: {prefix + ': ' if prefix else ''}{error['message']}")
    lines.append(
        f"run {doc['id']}: {doc['status']} in {doc['duration_s']:.1f}s"
        + (f" (accel {doc['accel']})" if doc.get("accel") else "")
    )
    return "\n".join(lines)
