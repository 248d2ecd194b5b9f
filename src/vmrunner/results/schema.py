"""The JSON Schema (draft 2020-12) of every result document, and its validator.

One envelope (:mod:`vmrunner.results.envelope`) for every kind, then the kind's part:
``exec`` (argv, exit code), ``workflow`` (``jobs[]``), ``systest`` (``phases[]``).
``vmrunner schema result`` prints :data:`RESULT_SCHEMA`. Pure code: no I/O.
"""

from __future__ import annotations

import functools
from typing import Any

from vmrunner.results.compare import COMPARISON_SCHEMA
from vmrunner.results.envelope import KINDS, RUN_STATUSES, SCHEMA_VERSION
from vmrunner.results.exec import EXEC_SCHEMA
from vmrunner.results.systest import SYSTEST_SCHEMA
from vmrunner.results.workflow import JOB_STATUSES

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
     "env": _STRMAP, "reason": _STR},
)  # fmt: skip
_ARTIFACT = _obj(
    ["name", "size", "digest"],
    {"id": {"type": "integer"}, "name": _STR, "size": {"type": "integer", "minimum": 0},
     "digest": _STR},
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
    "description": "The result of a vmrunner run: one command in a VM (kind exec), a "
    "workflow run (kind workflow, with jobs[]) or a system test (kind systest, with phases[]).",
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
        "host",
        "errors",
        "learning",
    ],  # fmt: skip
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "kind": {"enum": list(KINDS)},
        "id": {"type": "string", "minLength": 1},
        "status": {"enum": list(RUN_STATUSES)},
        "started_at": _TIME,
        "finished_at": _TIME,
        "duration_s": _NUM,
        "accel": {"type": ["string", "null"]},
        "host": {"type": "string"},
        "trigger": {"type": "object"},
        "errors": {"type": "array", "items": _ERROR},
        "jobs": {"type": "array", "items": _JOB},
        "phases": {"type": "array", "items": _PHASE},
        "learning": {"type": ["object", "null"]},
        "comparison": COMPARISON_SCHEMA,
    },
    "allOf": [
        {
            "if": {"properties": {"kind": {"const": "workflow"}}},
            "then": {"required": ["jobs"], "not": {"anyOf": [{"required": ["phases"]},
                                                             {"required": ["argv"]}]},
                     "properties": {"artifacts": {"type": "array", "items": _ARTIFACT}}},
        },
        {
            "if": {"properties": {"kind": {"const": "systest"}}},
            "then": {"required": ["phases"], "not": {"anyOf": [{"required": ["jobs"]},
                                                               {"required": ["argv"]}]},
                     "allOf": [SYSTEST_SCHEMA]},
        },
        {
            "if": {"properties": {"kind": {"const": "exec"}}},
            "then": {"not": {"anyOf": [{"required": ["jobs"]}, {"required": ["phases"]}]},
                     "allOf": [EXEC_SCHEMA]},
        },
    ],
}  # fmt: skip


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator  # loaded on first use: start-up stays fast

    return Draft202012Validator(RESULT_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_result(doc: Any) -> list[str]:
    """Every way ``doc`` departs from :data:`RESULT_SCHEMA`, as ``path: message`` lines;
    empty when it is valid."""
    problems = []
    for error in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.path))):
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{path}: {error.message}")
    return problems
