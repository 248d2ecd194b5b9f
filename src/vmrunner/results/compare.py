"""What changed between two attempts: a pure comparison of two result documents.

``compare(before, after)`` says which phases (systest) or steps (workflow) and which
checks changed status, which error kinds appeared or went away, which units changed
state and how the durations moved. The comparison is what ``vmrunner runs compare``
prints, what ``systest --compare`` adds to the result document as ``comparison``, and
what the MCP tool ``compare_runs`` returns. Pure code: no I/O, no clock.

Check and unit states are read from the documents themselves: a systest's runtime
phase lists each check as ``ok  <check>`` or ``FAIL <check>`` and the failed units;
errors name units (``service_failed``) and unit lists (boot timeouts). A unit that
failed before and is not failed in a run whose runtime phase ran is ``ok``; when the
runtime phase did not run, its state is ``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Doc = Mapping[str, Any]
_UNIT_LISTS = (("failed_units", "failed"), ("pending_units", "pending"), ("active_units", "active"))

_CHANGE = {
    "type": "object",
    "required": ["name", "before", "after"],
    "properties": {"name": {"type": "string"}, "before": {"type": ["string", "null"]},
                   "after": {"type": ["string", "null"]}},
}  # fmt: skip
_DURATION = {
    "type": "object",
    "required": ["name", "before_s", "after_s", "delta_s"],
    "properties": {"name": {"type": "string"}, "before_s": {"type": ["number", "null"]},
                   "after_s": {"type": ["number", "null"]}, "delta_s": {"type": ["number", "null"]}},
}  # fmt: skip
_LIST = {"type": "array", "items": {"type": "string"}}
COMPARISON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "What changed from run 'before' to run 'after' (vmrunner.results.compare).",
    "required": ["before", "after", "status", "phases", "steps", "checks", "errors", "units",
                 "durations", "summary"],
    "properties": {
        "before": {"type": "string"},
        "after": {"type": "string"},
        "status": _CHANGE,
        "phases": {"type": "array", "items": _CHANGE},
        "steps": {"type": "array", "items": _CHANGE},
        "checks": {"type": "array", "items": _CHANGE},
        "errors": {"type": "object", "required": ["appeared", "gone"],
                   "properties": {"appeared": _LIST, "gone": _LIST}},
        "units": {"type": "array", "items": _CHANGE},
        "durations": {"type": "object", "required": ["total", "phases", "steps"],
                      "properties": {"total": _DURATION,
                                     "phases": {"type": "array", "items": _DURATION},
                                     "steps": {"type": "array", "items": _DURATION}}},
        "summary": {"type": "string"},
    },
}  # fmt: skip


def _changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every name whose value differs, in first-seen order (a missing side is None)."""
    names = list(dict.fromkeys([*before, *after]))
    return [{"name": n, "before": before.get(n), "after": after.get(n)}
            for n in names if before.get(n) != after.get(n)]  # fmt: skip


def _phases(doc: Doc) -> dict[str, str]:
    return {str(p["name"]): str(p["status"]) for p in doc.get("phases") or []}


def _steps(doc: Doc) -> dict[str, str]:
    """``job / step`` -> conclusion, for a workflow document (empty otherwise)."""
    out: dict[str, str] = {}
    for job in doc.get("jobs") or []:
        for step in job.get("steps") or []:
            out[f"{job.get('name') or job.get('id')} / {step.get('name')}"] = str(
                step.get("conclusion")
            )
        out.setdefault(f"{job.get('name') or job.get('id')}", str(job.get("status")))
    return out


def _runtime_tail(doc: Doc) -> str | None:
    """The runtime phase's log when it ran (None when it did not)."""
    for p in doc.get("phases") or []:
        if p.get("name") == "runtime" and p.get("status") in ("passed", "failed"):
            return str(p.get("log_tail") or "")
    return None


def checks(doc: Doc) -> dict[str, str]:
    """Each check's status (``passed``/``failed``) as the runtime phase recorded it, and
    every ``check_failed`` error's check as ``failed``."""
    out: dict[str, str] = {}
    for line in (_runtime_tail(doc) or "").splitlines():
        if line.startswith("ok  "):
            out[line[4:].strip()] = "passed"
        elif line.startswith("FAIL"):
            out[line[4:].strip()] = "failed"
    for e in doc.get("errors") or []:
        if e.get("kind") == "check_failed" and e.get("check"):
            out[str(e["check"])] = "failed"
    return out


def units(doc: Doc) -> dict[str, str]:
    """The unit states a document names: failed units from the runtime phase and
    ``service_failed`` errors, and the unit lists of boot errors."""
    out: dict[str, str] = {}
    for e in doc.get("errors") or []:
        for key, state in _UNIT_LISTS:
            for unit in e.get(key) or []:
                out.setdefault(str(unit), state)
        if e.get("kind") == "service_failed" and e.get("unit"):
            out[str(e["unit"])] = "failed"
    for line in (_runtime_tail(doc) or "").splitlines():
        if line.startswith("failed units:"):
            names = line.split(":", 1)[1].strip()
            out.update((u.strip(), "failed") for u in names.split(",") if u.strip() != "none")
    return out


def _unit_changes(before: Doc, after: Doc) -> list[dict[str, Any]]:
    """Units whose state changed; a unit one side does not name is ``ok`` on that side if
    its runtime phase ran (no failed unit went unlisted), else ``unknown``."""
    b, a = units(before), units(after)
    for side, doc, other in ((b, before, a), (a, after, b)):
        fallback = "ok" if _runtime_tail(doc) is not None else "unknown"
        for unit in other:
            side.setdefault(unit, fallback)
    return _changes(b, a)


def _error_keys(doc: Doc) -> list[str]:
    """Each error as ``kind`` plus what identifies it (unit, check, job/step), sorted."""
    keys = []
    for e in doc.get("errors") or []:
        what = e.get("unit") or e.get("check") or e.get("step") or e.get("job") or ""
        keys.append(f"{e.get('kind')}" + (f" ({what})" if what else ""))
    return sorted(set(keys))


def _durations(before: Mapping[str, float], after: Mapping[str, float]) -> list[dict[str, Any]]:
    names = list(dict.fromkeys([*before, *after]))
    return [_duration(n, before.get(n), after.get(n)) for n in names]


def _duration(name: str, b: float | None, a: float | None) -> dict[str, Any]:
    delta = round(a - b, 3) if a is not None and b is not None else None
    return {"name": name, "before_s": b, "after_s": a, "delta_s": delta}


def _phase_times(doc: Doc) -> dict[str, float]:
    return {str(p["name"]): float(p.get("duration_s") or 0.0) for p in doc.get("phases") or []
            if p.get("status") != "skipped"}  # fmt: skip


def _step_times(doc: Doc) -> dict[str, float]:
    return {f"{j.get('name') or j.get('id')} / {s.get('name')}": float(s.get("duration_s") or 0.0)
            for j in doc.get("jobs") or [] for s in j.get("steps") or []}  # fmt: skip


def compare(before: Doc, after: Doc) -> dict[str, Any]:
    """The comparison of two result documents (``before`` is the earlier attempt); valid
    against :data:`COMPARISON_SCHEMA`. Documents of different kinds compare only their
    envelopes (status, errors, total duration)."""
    eb, ea = _error_keys(before), _error_keys(after)
    out: dict[str, Any] = {
        "before": str(before.get("id", "")),
        "after": str(after.get("id", "")),
        "status": {"name": "status", "before": before.get("status"), "after": after.get("status")},
        "phases": _changes(_phases(before), _phases(after)),
        "steps": _changes(_steps(before), _steps(after)),
        "checks": _changes(checks(before), checks(after)),
        "errors": {
            "appeared": [k for k in ea if k not in eb],
            "gone": [k for k in eb if k not in ea],
        },
        "units": _unit_changes(before, after),
        "durations": {
            "total": _duration(
                "total", _num(before.get("duration_s")), _num(after.get("duration_s"))
            ),
            "phases": _durations(_phase_times(before), _phase_times(after)),
            "steps": _durations(_step_times(before), _step_times(after)),
        },
    }
    out["summary"] = summarise(out)
    return out


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _listed(label: str, changes: Iterable[Mapping[str, Any]]) -> str:
    items = [f"{c['name']} {c['before'] or '-'} -> {c['after'] or '-'}" for c in changes]
    return f"{label}: {'; '.join(items)}" if items else ""


def summarise(cmp: Mapping[str, Any]) -> str:
    """One line per kind of change, for people (and the first thing an agent reads)."""
    s = cmp["status"]
    lines = [f"run {cmp['before']} -> {cmp['after']}: {s['before']} -> {s['after']}"]
    for label in ("phases", "steps", "checks", "units"):
        lines.append(_listed(label, cmp[label]))
    errs = cmp["errors"]
    if errs["appeared"]:
        lines.append(f"errors appeared: {', '.join(errs['appeared'])}")
    if errs["gone"]:
        lines.append(f"errors gone: {', '.join(errs['gone'])}")
    t = cmp["durations"]["total"]
    if t["delta_s"] is not None:
        lines.append(
            f"duration: {t['before_s']:.1f} s -> {t['after_s']:.1f} s ({t['delta_s']:+.1f} s)"
        )
    return "\n".join(line for line in lines if line)


def render_text(cmp: Mapping[str, Any]) -> str:
    """The comparison for people: the summary, then each phase's duration change."""
    lines = [cmp["summary"]]
    for d in cmp["durations"]["phases"]:
        if d["delta_s"] is not None:
            lines.append(f"  {d['name']:<10} {d['before_s']:8.1f} s -> {d['after_s']:8.1f} s "
                         f"({d['delta_s']:+.1f} s)")  # fmt: skip
    return "\n".join(lines) + "\n"
