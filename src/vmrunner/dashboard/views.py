"""What the dashboard's templates show, computed from kept runs: plain dicts, so the
templates hold no logic beyond loops. Pure code (no I/O): records and documents in,
display data out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

from vmrunner.dashboard.ansi import ansi_to_html

FAILED = ("failure", "failed", "timeout", "error")


def when(ts: float | None) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM:SS`` UTC ("" for none)."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """``1.2s``, ``3m 04s``, ``2h 05m`` ("" for none)."""
    if seconds is None:
        return ""
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    return f"{m}m {sec:02d}s" if m < 60 else f"{m // 60}h {m % 60:02d}m"


def run_row(rec: Any, now: float) -> dict[str, Any]:
    """One line of the runs list."""
    end = rec.finished_at if rec.finished_at is not None else (now if rec.started_at else None)
    took = end - rec.started_at if rec.started_at is not None and end is not None else None
    return {"id": rec.id, "kind": rec.kind, "status": rec.status, "title": rec.title,
            "repo": rec.repo or "", "branch": rec.branch or "", "host": rec.host,
            "created": when(rec.created_at), "duration": duration(took),
            "active": rec.active, "cancel_requested": rec.cancel_requested}  # fmt: skip


def _tail(text: Any) -> Markup | None:
    return Markup(ansi_to_html(str(text))) if text else None


def _steps(job: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"name": s.get("name") or s.get("command") or s.get("id", ""),
             "status": s.get("conclusion") or s.get("outcome") or "", "exit_code": s.get("exit_code"),
             "duration": duration(s.get("duration_s")), "failed": s.get("conclusion") in FAILED}
            for s in job.get("steps") or []]  # fmt: skip


def _failed_workflow_step(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    for job in doc.get("jobs") or []:
        for step in job.get("steps") or []:
            if step.get("conclusion") in FAILED:
                name = step.get("name") or step.get("command") or step.get("id", "")
                return {
                    "where": f"{job.get('name', '')} / {name}",
                    "tail": _tail(step.get("log_tail")),
                }
    return None


def _failed_phase(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    for phase in doc.get("phases") or []:
        if phase.get("status") in FAILED:
            return {"where": f"phase {phase.get('name', '')}", "tail": _tail(phase.get("log_tail"))}
    return None


def _failure(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """Where the run failed and that step's (phase's, command's) log tail."""
    if doc.get("kind") == "workflow":
        return _failed_workflow_step(doc)
    if doc.get("kind") == "systest":
        return _failed_phase(doc)
    if doc.get("status") in FAILED and doc.get("output_tail"):
        return {"where": " ".join(doc.get("argv") or []), "tail": _tail(doc.get("output_tail"))}
    return None


def _hints(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The learning hints of a failed run (``document["learning"]["failed_steps"]``)."""
    learning = doc.get("learning") or {}
    hints = []
    for step in learning.get("failed_steps") or []:
        lesson = step.get("lesson") or {}
        hints.append({"where": f"{step.get('job', '')} / {step.get('step_name') or step.get('command', '')}",
                      "template": step.get("template", ""), "occurrences": step.get("occurrences", 0),
                      "flaky": bool(step.get("flaky")), "fix": lesson.get("fix")})  # fmt: skip
    return hints


def run_detail(rec: Any, now: float) -> dict[str, Any]:
    """The run page's data: the row, then jobs with steps (workflow), phases (systest),
    the failure with its log tail, errors, and the learning hints."""
    doc: Mapping[str, Any] = rec.document or {}
    jobs = [{"name": j.get("name") or j.get("id", ""), "status": j.get("status", ""),
             "duration": duration(j.get("duration_s")), "steps": _steps(j)}
            for j in doc.get("jobs") or []]  # fmt: skip
    phases = [{"name": p.get("name", ""), "status": p.get("status", ""),
               "duration": duration(p.get("duration_s"))} for p in doc.get("phases") or []]  # fmt: skip
    return {**run_row(rec, now), "sha": rec.sha or "", "started": when(rec.started_at),
            "finished": when(rec.finished_at), "jobs": jobs, "phases": phases,
            "argv": " ".join(doc.get("argv") or rec.request.get("argv") or []),
            "exit_code": doc.get("exit_code"), "failure": _failure(doc),
            "errors": [e.get("message", "") for e in doc.get("errors") or []],
            "hints": _hints(doc)}  # fmt: skip
