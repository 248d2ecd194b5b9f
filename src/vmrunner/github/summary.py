"""The Markdown a check run shows, and its annotations, from a job's result entries.

Pure: no I/O, no clock. Input is the JSON form of the workflow result document
(:mod:`vmrunner.results.workflow`): a job's instances (one entry per matrix
combination), their steps with ``log_tail`` and ``annotations``, the document's
``errors`` and ``learning``. Every text is cut to GitHub's 65,535 characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_TEXT = 65535
"""GitHub's limit on a check run's ``output.summary`` and ``output.text``."""
LOG_LINES = 40
"""How many of the failed step's last log lines the summary shows."""
CUT_MARK = "\n\n… (cut to GitHub's limit)"
_LEVELS = {"error": "failure", "warning": "warning", "notice": "notice"}
_ICONS = {"success": "✅", "failure": "❌", "cancelled": "⏹", "skipped": "⏭"}

Json = Mapping[str, Any]


def cut(text: str, limit: int = MAX_TEXT, mark: str = CUT_MARK) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and ``mark`` in exactly
    ``limit`` characters (just the head when ``mark`` itself does not fit)."""
    if len(text) <= limit:
        return text
    if len(mark) >= limit:
        return text[:limit]
    return text[: limit - len(mark)] + mark


def failed_step(instance: Json) -> tuple[int, Json] | None:
    """The first failed step of a job instance and its 1-based index, or None."""
    for index, step in enumerate(instance.get("steps") or [], start=1):
        if step.get("conclusion") == "failure" or step.get("outcome") == "failure":
            return index, step
    return None


def step_failure(step: Json) -> str:
    """``step 'Run tests' failed (exit status 1)`` or ``... timed out``."""
    name = step.get("name") or step.get("id") or "?"
    if step.get("timed_out"):
        return f"step '{name}' timed out"
    code = step.get("exit_code")
    return f"step '{name}' failed" + (f" (exit status {code})" if code is not None else "")


def _cell(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def fence(text: str, info: str = "text") -> str:
    """``text`` in a code fence longer than any run of backticks inside it."""
    longest, run = 0, 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{text}\n{ticks}"


def jobs_table(instances: Sequence[Json]) -> str:
    """One row per job instance: name, status, failed step, duration."""
    rows = ["| Job | Status | Failed step | Duration |", "|---|---|---|---|"]
    for inst in instances:
        status = str(inst.get("status") or "?")
        failed = failed_step(inst)
        step = _cell(failed[1].get("name") or failed[1].get("id")) if failed else ""
        seconds = float(inst.get("duration_s") or 0.0)
        rows.append(f"| {_cell(inst.get('name') or inst.get('id'))} | "
                    f"{_ICONS.get(status, '')} {status} | {step} | {seconds:.1f} s |")  # fmt: skip
    return "\n".join(rows)


def last_lines(text: str, count: int = LOG_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-count:])


def learning_hint(learning: Json | None, job_id: str, step_index: int) -> str | None:
    """ "seen 4 times; last fixed by run a -> b: ..." for the failed step ``step_index``
    of job ``job_id``, from the document's ``learning`` (None when it says nothing)."""
    for seen in (learning or {}).get("failed_steps") or []:
        if str(seen.get("job")) != job_id or int(seen.get("step") or 0) != step_index:
            continue
        count = int(seen.get("occurrences") or 0)
        hint = f"seen {count} times" if count > 1 else "first time this failure is seen"
        fix = (seen.get("lesson") or {}).get("fix")
        if fix:
            changes = "; ".join(
                f"{c.get('kind')}: {c.get('before') or '-'} -> {c.get('after') or '-'}"[:200]
                for c in (fix.get("changes") or [])[:5]
            )  # fmt: skip
            hint += (
                f"; last fixed by run {fix.get('passing_run')} (after run {fix.get('failing_run')})"
            )
            hint += f": {changes}" if changes else ""
        if seen.get("flaky"):
            hint += "; it looks flaky (passed and failed on the same commit)"
        return hint
    return None


def _failure_section(instance: Json, learning: Json | None) -> list[str]:
    found = failed_step(instance)
    if found is None:
        return []
    index, step = found
    out = [f"### {_cell(instance.get('name') or instance.get('id'))}: {step_failure(step)}"]
    if step.get("command"):
        out.append(fence(str(step["command"])[:2000], "sh"))
    tail = last_lines(str(step.get("log_tail") or ""))
    out.append(f"Last log lines:\n\n{fence(tail)}" if tail else "No log output.")
    hint = learning_hint(learning, str(instance.get("id")), index)
    if hint:
        out.append(f"**Learning:** {hint}")
    return out


def _errors_section(errors: Iterable[Json]) -> list[str]:
    lines = []
    for error in errors:
        where = f" ({error['file']}:{error.get('line', '?')})" if error.get("file") else ""
        lines.append(f"- {error.get('kind', 'error')}{where}: {_cell(error.get('message', ''))}")
    return ["### Errors", *lines] if lines else []


def summary(headline: str, instances: Sequence[Json], document: Json, job_id: str) -> str:
    """A job's check run summary: the headline, the instances table, each failed
    instance's step, command, last log lines and learning hint, the job's errors."""
    parts = [f"**{headline}**", jobs_table(instances)]
    learning = document.get("learning")
    for inst in instances:
        if inst.get("status") == "failure":
            parts.extend(_failure_section(inst, learning))
    mine = [e for e in document.get("errors") or []
            if e.get("job") is None or str(e["job"]).split("/")[0] == job_id]  # fmt: skip
    parts.extend(_errors_section(mine))
    return cut("\n\n".join(parts))


def annotations_of(instances: Sequence[Json]) -> list[dict[str, Any]]:
    """Check run annotations from the steps' ``::error file=,line=::`` (and warning,
    notice) commands; ones without a file or line cannot be placed and are left out."""
    out: list[dict[str, Any]] = []
    for inst in instances:
        for step in inst.get("steps") or []:
            for note in step.get("annotations") or []:
                if not note.get("file") or not note.get("line"):
                    continue
                line = max(1, int(note["line"]))
                item: dict[str, Any] = {
                    "path": str(note["file"]), "start_line": line, "end_line": line,
                    "annotation_level": _LEVELS.get(str(note.get("level")), "notice"),
                    "message": cut(str(note.get("message") or "(no message)"), MAX_TEXT),
                }  # fmt: skip
                if note.get("title"):
                    item["title"] = cut(str(note["title"]), 255, "…")
                if note.get("col"):
                    item["start_column"] = item["end_column"] = max(1, int(note["col"]))
                out.append(item)
    return out


def batches(items: Sequence[Any], size: int = 50) -> list[list[Any]]:
    """``items`` in consecutive batches of at most ``size`` (GitHub takes 50 annotations
    per request); one empty batch when there are none."""
    if not items:
        return [[]]
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
