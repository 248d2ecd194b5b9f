"""The envelope every result document shares, whatever its kind.

``schema_version``, ``kind`` (``exec``, ``workflow`` or ``systest``), ``id``,
``status``, ``started_at``, ``finished_at``, ``duration_s``, ``accel``, ``host``,
``errors[]`` and ``learning``; then the kind's own part. Pure code: no I/O, no clock
(times are passed in).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

SCHEMA_VERSION = 2
KINDS: tuple[str, ...] = ("exec", "workflow", "systest")
RunStatus = Literal["success", "failure", "cancelled", "timeout", "error"]
RUN_STATUSES: tuple[str, ...] = ("success", "failure", "cancelled", "timeout", "error")
# What the store shows before a run has a final status.
ACTIVE_STATUSES: tuple[str, ...] = ("queued", "running")


def iso(timestamp: float) -> str:
    """A Unix time as an ISO 8601 UTC string with milliseconds."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
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
        return drop_none(self.__dict__)


def envelope(
    kind: str, run_id: str, status: str, started_at: float, finished_at: float, *,
    accel: str | None, host: str, errors: Iterable[Mapping[str, Any]],
    learning: Mapping[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The shared head of a result document (the kind adds its own fields after it)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "id": run_id,
        "status": status,
        "started_at": iso(started_at),
        "finished_at": iso(finished_at),
        "duration_s": round(max(0.0, finished_at - started_at), 3),
        "accel": accel,
        "host": host,
        "errors": [dict(e) for e in errors],
        "learning": dict(learning) if learning is not None else None,
    }


def interrupted(
    kind: str, run_id: str, times: tuple[float, float], host: str, why: str,
    part: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The document of a run whose process died before it could write one: status
    ``error`` with one harness error saying it was interrupted (a systest error names
    its phase, as systest errors do), then the kind's own ``part``."""
    error: dict[str, Any] = {"kind": "harness", "message": f"interrupted: {why}"}
    if kind == "systest":
        error = {"kind": "harness_error", "phase": "preflight", "message": error["message"]}
    doc = envelope(kind, run_id, "error", times[0], times[1], accel=None, host=host,
                   errors=[error])  # fmt: skip
    doc.update(part)
    return doc
