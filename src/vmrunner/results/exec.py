"""The exec part of a result document: one command in one fresh VM.

Pure code: the caller passes what happened (argv, exit code or signal, timings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmrunner.results.envelope import envelope


def exec_status(exit_code: int | None, timed_out: bool, error: str | None) -> str:
    """The run status of a command: ``success`` for exit 0, ``timeout`` when its timeout
    killed it, ``error`` when the harness failed, else ``failure``."""
    if timed_out:
        return "timeout"
    if error is not None and exit_code is None:
        return "error"
    return "success" if exit_code == 0 else "failure"


@dataclass(frozen=True)
class ExecDocument:
    """What ``vmrunner exec`` ran and how it ended."""

    id: str
    status: str
    started_at: float
    finished_at: float
    argv: Sequence[str]
    image: str | None
    accel: str | None = None
    cpus: int | None = None
    memory_mib: int | None = None
    host: str = ""
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    exit_status: int = 125
    command_duration_s: float = 0.0
    timings: Mapping[str, float] = field(default_factory=dict)
    restored_from_snapshot: bool = False
    output_tail: str = ""
    errors: Sequence[Mapping[str, Any]] = ()
    learning: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = envelope(
            "exec", self.id, self.status, self.started_at, self.finished_at, accel=self.accel,
            host=self.host, errors=self.errors, learning=self.learning,
        )  # fmt: skip
        doc.update(
            argv=list(self.argv), image=self.image, cpus=self.cpus, memory_mib=self.memory_mib,
            exit_code=self.exit_code, signal=self.signal,
            timed_out=self.timed_out, exit_status=self.exit_status,
            command_duration_s=round(self.command_duration_s, 6),
            timings={k: round(v, 6) for k, v in self.timings.items()},
            restored_from_snapshot=self.restored_from_snapshot, output_tail=self.output_tail,
        )  # fmt: skip
        return doc


EXEC_SCHEMA: dict[str, Any] = {
    "description": "What an exec result adds to the envelope (applied when kind is exec).",
    "required": ["argv", "image", "exit_code", "signal", "timed_out", "exit_status"],
    "properties": {
        "argv": {"type": "array", "items": {"type": "string"}},
        "image": {"type": ["string", "null"]},
        "cpus": {"type": ["integer", "null"], "minimum": 1},
        "memory_mib": {"type": ["integer", "null"], "minimum": 1},
        "exit_code": {"type": ["integer", "null"]},
        "signal": {"type": ["integer", "null"]},
        "timed_out": {"type": "boolean"},
        "exit_status": {"type": "integer", "minimum": 0, "maximum": 255},
        "command_duration_s": {"type": "number", "minimum": 0},
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
        "restored_from_snapshot": {"type": "boolean"},
        "output_tail": {"type": "string"},
    },
}
