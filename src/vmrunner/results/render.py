"""Result documents as text for people: the same document an agent parses.

Pure code: no I/O. :func:`render_text` dispatches on ``kind``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any


def _job_label(job: Mapping[str, Any]) -> str:
    return str(job.get("name") or job.get("id"))


def _failed_step(job: Mapping[str, Any]) -> str:
    for step in job.get("steps", []):
        if step.get("outcome") == "failure":
            extra = " (timed out)" if step.get("timed_out") else ""
            return f"{step.get('name')}{extra}"
    return ""


def _render_workflow(doc: Mapping[str, Any]) -> str:
    """A plain-text summary table of a workflow result document."""
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


def _render_exec(doc: Mapping[str, Any]) -> str:
    argv = shlex.join(str(a) for a in doc.get("argv") or [])
    how = f"exit status {doc.get('exit_status')}"
    if doc.get("timed_out"):
        how += " (timed out)"
    elif doc.get("signal"):
        how += f" (signal {doc['signal']})"
    lines = [f"exec {argv} on {doc.get('image') or '-'}: {how}"]
    lines += [f"{e['kind']}: {e['message']}" for e in doc.get("errors", [])]
    lines.append(
        f"run {doc['id']}: {doc['status']} in {doc['duration_s']:.1f}s"
        + (f" (accel {doc['accel']})" if doc.get("accel") else "")
    )
    return "\n".join(lines)


def render_text(doc: Mapping[str, Any]) -> str:
    """A result document (any kind) as plain text for people; no trailing newline."""
    kind = doc.get("kind")
    if kind == "systest":
        from vmrunner.results.systest import render_text as render_systest

        return render_systest(dict(doc)).rstrip("\n")
    if kind == "exec":
        return _render_exec(doc)
    return _render_workflow(doc)
