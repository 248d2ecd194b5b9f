"""The output schema of every MCP tool (JSON Schema, draft 2020-12).

Tools that run something return the run's result document itself, so their schema is
:data:`vmrunner.results.RESULT_SCHEMA` (self-contained: no ``$ref`` leaves the document,
as MCP clients resolve none). Pure data.
"""

from __future__ import annotations

from typing import Any

from vmrunner.results import RESULT_SCHEMA
from vmrunner.results.compare import COMPARISON_SCHEMA

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_STR = {"type": "string"}
_OPT_STR = {"type": ["string", "null"]}
_INT = {"type": "integer", "minimum": 0}
_NUM = {"type": "number"}
_OBJ = {"type": "object"}


def _obj(required: list[str], props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props, **extra}


def _top(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"$schema": DRAFT, **schema, "description": description}


def _nested(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without the keywords only a schema resource's root carries."""
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id", "title")}


RESULT = _top(_nested(RESULT_SCHEMA), "The run's result document (vmrunner schema result); "
              "long logs are cut to their end, with a note naming the get_logs call for more.")  # fmt: skip

RUN_SUMMARY = _obj(
    ["id", "kind", "status", "title", "created_at", "host"],
    {"id": _STR, "kind": _STR, "status": _STR, "title": _STR, "created_at": _NUM,
     "started_at": {"type": ["number", "null"]}, "finished_at": {"type": ["number", "null"]},
     "host": _STR, "repo": _OPT_STR, "branch": _OPT_STR, "sha": _OPT_STR},
)  # fmt: skip

GET_RESULT = _top(
    _obj(["run", "document", "part"],
         {"run": RUN_SUMMARY, "document": {"anyOf": [{"type": "null"}, _nested(RESULT_SCHEMA)]},
          "part": {"type": ["object", "null"],
                   "description": "the job or phase asked for, with the errors that belong to it"}}),
    "A kept run: its summary and its result document (null while it runs, or when one job "
    "or phase was asked for: then 'part' holds it).",
)  # fmt: skip

LIST_RUNS = _top(_obj(["runs"], {"runs": {"type": "array", "items": RUN_SUMMARY}}),
                 "The newest kept runs, newest first.")  # fmt: skip
CANCEL_RUN = _top(_obj(["run", "ended"], {"run": RUN_SUMMARY, "ended": {"type": "boolean"}}),
                  "The run after the cancel request (ended: it has a final status).")  # fmt: skip

GET_LOGS = _top(
    _obj(["run_id", "log", "mode", "first_line", "last_line", "total_lines", "truncated", "text",
          "logs"],
         {"run_id": _STR, "log": _STR, "mode": {"enum": ["tail", "error"]}, "first_line": _INT,
          "last_line": _INT, "total_lines": _INT, "truncated": {"type": "boolean"}, "text": _STR,
          "error_line": {"type": ["integer", "null"]}, "logs": {"type": "array", "items": _STR}}),
    "A window of one log of a run: its end, or the lines around its first error.",
)  # fmt: skip

_FAILING = _obj(
    ["phase", "job", "step", "command"],
    {"phase": _OPT_STR, "job": _OPT_STR, "step": _OPT_STR, "command": _OPT_STR},
)
_SEEN = _obj(
    ["template", "occurrences", "occurrences_before", "flaky"],
    {"template": _STR, "occurrences": _INT, "occurrences_before": _INT, "flaky": {"type": "boolean"},
     "step_name": _STR, "signature_id": _STR},
)  # fmt: skip
EXPLAIN = _top(
    _obj(["run_id", "kind", "status", "failing", "errors", "evidence", "learning", "hint",
          "lesson", "candidate_fix", "summary"],
         {"run_id": _STR, "kind": _STR, "status": _STR, "failing": _FAILING,
          "errors": {"type": "array", "items": _obj(["kind", "message"], {"kind": _STR, "message": _STR})},
          "evidence": _STR, "learning": {"anyOf": [{"type": "null"}, _SEEN]}, "hint": _STR,
          "lesson": {"type": ["object", "null"]}, "candidate_fix": {"type": ["object", "null"]},
          "summary": _STR}),
    "Why a run failed: the failing phase or step, the error kinds, what the evidence says, "
    "how often this failure was seen (a lesson once seen often enough) and a candidate fix.",
)  # fmt: skip

PREDICT = _top(
    _obj(["command", "normalised", "probability", "observations", "interval", "level", "baseline"],
         {"command": _STR, "normalised": _STR, "family": _STR, "probability": _NUM,
          "observations": _INT, "interval": {"type": "array", "items": _NUM}, "level": _STR,
          "levels": {"type": "array", "items": _OBJ}, "baseline": _NUM}),
    "The probability that a command succeeds, from the runs seen so far.",
)  # fmt: skip
RELATED = _top(
    _obj(["command", "normalised", "observations", "before", "after", "failed_with"],
         {"command": _STR, "normalised": _STR, "repo": _OPT_STR, "observations": _INT,
          "usual_sequence": {"type": "array", "items": _STR},
          **{k: {"type": "array", "items": _OBJ}
             for k in ("before", "after", "failed_with", "co_failures")}}),
    "Commands seen before and after a command, and the failures seen with it.",
)  # fmt: skip
LESSONS = _top(
    _obj(["min_occurrences", "lessons"],
         {"min_occurrences": _INT,
          "lessons": {"type": "array", "items": _obj(
              ["signature_id", "template", "occurrences"],
              {"signature_id": _STR, "template": _STR, "occurrences": _INT,
               "fix": {"type": ["object", "null"]}})}}),
    "Failures seen at least min_occurrences times, most frequent first, with candidate fixes.",
)  # fmt: skip
COMPARE = _top(dict(COMPARISON_SCHEMA), "What changed between two attempts.")
