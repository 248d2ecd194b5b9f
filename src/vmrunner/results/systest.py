"""The systest part of a result document: phases, errors, the systest part of the JSON
Schema, and the text rendering for people. Pure (no clock: times are passed in).

Inside the shared envelope (:mod:`vmrunner.results.envelope`): ``config``, ``flavor``,
``failed_phase``, ``phases[]`` and ``artifacts``; ``errors[]`` items carry ``phase``
and kind-specific fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vmrunner.results.envelope import envelope, iso

PHASES = ("preflight", "build", "install", "boot", "runtime")
PHASE_STATUSES = ("passed", "failed", "skipped", "timeout")
ERROR_KINDS = (
    "kvm_unavailable",
    "tool_missing",
    "recipe_invalid",
    "eval_error",
    "build_error",
    "network_error",
    "hash_mismatch",
    "install_error",
    "kernel_panic",
    "emergency_mode",
    "boot_timeout",
    "service_failed",
    "check_failed",
    "harness_error",
    "cancelled",
)
Detail = str | int | float | bool | None | list[str]


@dataclass(frozen=True)
class SystestError:
    """One thing that went wrong, with the fields an agent needs to act on it."""

    kind: str
    message: str
    phase: str = ""
    details: dict[str, Detail] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "phase": self.phase, "message": self.message}
        out.update((k, v) for k, v in self.details.items() if v is not None)
        return out

    def at(self, phase: str) -> SystestError:
        return SystestError(self.kind, self.message, phase, self.details)


@dataclass
class Phase:
    """One phase's outcome (mutable while the run goes on)."""

    name: str
    status: str = "skipped"
    started_at: float | None = None
    finished_at: float | None = None
    log_tail: str = ""
    info: dict[str, Detail] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "started_at": iso(self.started_at) if self.started_at is not None else None,
            "finished_at": iso(self.finished_at) if self.finished_at is not None else None,
            "duration_s": round(self.duration_s, 3),
            "log_tail": self.log_tail,
            **self.info,
        }


@dataclass
class SystestResult:
    """The whole result of one ``vmrunner systest``."""

    id: str
    config: str
    flavor: str
    started_at: float
    finished_at: float = 0.0
    accel: str | None = None
    status: str = "error"
    phases: list[Phase] = field(default_factory=lambda: [Phase(n) for n in PHASES])
    errors: list[SystestError] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    learning: dict[str, Any] | None = None
    host: str = ""
    # Called with each phase when it starts and when it ends (live progress; not in to_dict).
    on_phase: Callable[[Phase], None] | None = field(default=None, repr=False, compare=False)

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    @property
    def failed_phase(self) -> str | None:
        return next((p.name for p in self.phases if p.status in ("failed", "timeout")), None)

    @property
    def exit_status(self) -> int:
        return 0 if self.status == "success" else 1

    def to_dict(self) -> dict[str, Any]:
        doc = envelope(
            "systest", self.id, self.status, self.started_at, self.finished_at,
            accel=self.accel, host=self.host, errors=[e.to_dict() for e in self.errors],
            learning=self.learning,
        )  # fmt: skip
        return doc | {
            "config": self.config,
            "flavor": self.flavor,
            "failed_phase": self.failed_phase,
            "phases": [p.to_dict() for p in self.phases],
            "artifacts": self.artifacts,
        }


_TS = {"type": ["string", "null"], "format": "date-time"}
SYSTEST_SCHEMA: dict[str, Any] = {
    "description": "What a systest result adds to the envelope of vmrunner.results.RESULT_SCHEMA "
    "(applied there when kind is systest).",
    "properties": {
        "accel": {"enum": ["kvm", "tcg", None]},
        "config": {"type": "string"},
        "flavor": {"enum": ["debian", "nixos"]},
        "failed_phase": {"enum": [*PHASES, None]},
        "artifacts": {"type": "object", "additionalProperties": {"type": "string"}},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kind", "message", "phase"],
                "properties": {
                    "kind": {"enum": list(ERROR_KINDS)},
                    "message": {"type": "string"},
                    "phase": {"enum": list(PHASES)},
                    "file": {"type": ["string", "null"]},
                    "line": {"type": ["integer", "null"]},
                    "url": {"type": ["string", "null"]},
                    "host": {"type": ["string", "null"]},
                    "unit": {"type": "string"},
                    "active_units": {"type": "array", "items": {"type": "string"}},
                    "failed_units": {"type": "array", "items": {"type": "string"}},
                    "pending_units": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "phases": {
            "type": "array",
            "minItems": len(PHASES),
            "maxItems": len(PHASES),
            "items": {
                "type": "object",
                "required": [
                    "name",
                    "status",
                    "started_at",
                    "finished_at",
                    "duration_s",
                    "log_tail",
                ],
                "properties": {
                    "name": {"enum": list(PHASES)},
                    "status": {"enum": list(PHASE_STATUSES)},
                    "started_at": _TS,
                    "finished_at": _TS,
                    "duration_s": {"type": "number", "minimum": 0},
                    "log_tail": {"type": "string"},
                },
            },
        },
    },
}


def to_json(doc: dict[str, Any]) -> str:
    """The result document as ``--json`` writes it."""
    return json.dumps(doc, indent=2) + "\n"


_SKIP_IN_TEXT = {"kind", "phase", "message", "log_tail", "journal_tail", "console_tail"}


def render_text(doc: dict[str, Any]) -> str:
    """The result document as text for people: a phase table, then each error in full."""
    lines = [
        f"systest {doc.get('config', '')} ({doc.get('flavor', '')}, accel {doc['accel'] or '-'}): "
        f"{doc['status'].upper()} in {doc['duration_s']:.1f} s"
    ]
    for p in doc["phases"]:
        mark = {"passed": "ok", "failed": "FAIL", "timeout": "TIMEOUT", "skipped": "-"}[p["status"]]
        lines.append(f"  {p['name']:<10} {mark:<8} {p['duration_s']:8.1f} s")
    for e in doc["errors"]:
        lines.append("")
        lines.append(f"[{e['phase']}] {e['kind']}: {e['message']}")
        for key, value in e.items():
            if key in _SKIP_IN_TEXT or value in (None, "", []):
                continue
            shown = ", ".join(value) if isinstance(value, list) else value
            lines.append(f"    {key}: {shown}")
        for key in ("log_tail", "journal_tail", "console_tail"):
            if e.get(key):
                lines.append(f"    {key}:")
                lines.extend(f"      | {ln}" for ln in str(e[key]).splitlines()[-20:])
    return "\n".join(lines) + "\n"
