"""The MCP tools over what vmrunner learned: ``explain_failure`` (why a run failed, from
its result and the failures seen before), ``predict_command``, ``related_commands`` and
``lessons``. They read the learning store through the service layer."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult
from pydantic import Field

from vmrunner.mcp import schemas
from vmrunner.mcp.bounded import keep_tail
from vmrunner.mcp.common import App, guarded, make_tool, reply

T = TypeVar("T")
EVIDENCE_CHARS = 4000
_TAILS = ("journal_tail", "log_tail", "console_tail", "actual", "output_tail")
_KEEP = ("kind", "message", "phase", "unit", "check", "job", "step", "file", "line", "expected",
         "result", "exit_status", "package", "url")  # fmt: skip
Command = Annotated[str, Field(min_length=1, description="A command line, as a shell string.")]


def failing_part(doc: dict[str, Any]) -> dict[str, Any]:
    """Where ``doc`` failed: the systest phase, or the workflow job and step, or the
    exec command (fields that do not apply are None)."""
    out: dict[str, Any] = {"phase": None, "job": None, "step": None, "command": None}
    if doc.get("kind") == "systest":
        out["phase"] = doc.get("failed_phase")
    elif doc.get("kind") == "exec":
        out["command"] = shlex.join(doc.get("argv") or [])
    for job in doc.get("jobs") or []:
        if job.get("status") == "failure":
            step = next(
                (s for s in job.get("steps") or [] if s.get("conclusion") == "failure"), None
            )
            out.update(job=job.get("name"), step=step and step.get("name"),
                       command=step and step.get("command"))  # fmt: skip
            break
    return out


def _errors(doc: dict[str, Any], failing: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's errors without their log tails; the failing phase's first."""
    errs = [{k: e[k] for k in _KEEP if e.get(k) not in (None, "")} for e in doc.get("errors") or []]
    return sorted(errs, key=lambda e: e.get("phase") != failing["phase"])


def evidence(doc: dict[str, Any], failing: dict[str, Any]) -> str:
    """What the logs say about the failure: the first tail an error carries, else the
    failing phase's or step's log tail, else the command's output (cut to its end)."""
    texts = [str(e[k]) for e in doc.get("errors") or [] for k in _TAILS if e.get(k)]
    texts += [str(p.get("log_tail")) for p in doc.get("phases") or []
              if p.get("name") == failing["phase"] and p.get("log_tail")]  # fmt: skip
    texts += [str(s.get("log_tail")) for j in doc.get("jobs") or [] for s in j.get("steps") or []
              if s.get("name") == failing["step"] and s.get("log_tail")]  # fmt: skip
    texts += [str(doc["output_tail"])] if doc.get("output_tail") else []
    return keep_tail(texts[0], EVIDENCE_CHARS, str(doc.get("id"))) if texts else ""


def _matching_step(steps: list[dict[str, Any]], failing: dict[str, Any]) -> dict[str, Any] | None:
    wanted = failing["phase"] or failing["step"]
    return next((s for s in steps if s.get("step_name") == wanted), steps[0] if steps else None)


def learned(
    explanation: dict[str, Any], failing: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(what was seen of this failure, its lesson) from a learning explanation."""
    step = _matching_step(list(explanation.get("failed_steps") or []), failing)
    if step is None:
        return None, None
    seen = {k: step[k] for k in ("template", "occurrences", "occurrences_before", "flaky",
                                 "step_name", "signature_id")}  # fmt: skip
    return seen, step.get("lesson")


def hint(seen: dict[str, Any] | None, lesson: dict[str, Any] | None, threshold: int) -> str:
    """The learning hint for people and agents, in one line."""
    if seen is None:
        return "no learning data for this run"
    line = f"this failure ('{seen['template'][:160]}') was seen {seen['occurrences']} times"
    if lesson is not None:
        line += f" (a lesson: seen at least {threshold} times, in {', '.join(lesson.get('jobs') or [])})"
        fix = lesson.get("fix")
        line += "; a candidate fix from a later passing run: " + _fix_text(fix) if fix else \
            "; no passing run after it yet, so no candidate fix"  # fmt: skip
    elif seen["occurrences_before"] == 0:
        line = f"first time this failure is seen ('{seen['template'][:160]}')"
    if seen.get("flaky"):
        line += "; it looks flaky (passed and failed on the same commit)"
    return line


def _fix_text(fix: dict[str, Any]) -> str:
    changes = fix.get("changes") or []
    parts = [
        f"{c.get('kind')}: {c.get('before') or '-'} -> {c.get('after') or '-'}"[:200]
        for c in changes[:5]
    ]
    return f"run {fix.get('failing_run')} -> {fix.get('passing_run')}: " + (
        "; ".join(parts) or "see lesson.fix"
    )


def _summary(doc: dict[str, Any], failing: dict[str, Any], errors: list[dict[str, Any]]) -> str:
    where = (failing["phase"] and f"phase {failing['phase']}") or (failing["step"] and \
        f"job {failing['job']}, step {failing['step']}") or failing["command"] or "the run"  # fmt: skip
    first = errors[0] if errors else None
    what = (
        f"{first['kind']}{' (' + first['unit'] + ')' if first.get('unit') else ''}: {first['message']}"
        if first
        else ""
    )
    return f"run {doc.get('id')} {doc.get('status')} in {where}" + (f": {what}" if what else "")


def learn_tools(app: App) -> list[Tool]:
    """Every tool of this module, bound to ``app``."""

    async def learning(fn: Callable[[Any], T]) -> T:
        from vmrunner.services.learning import open_learning

        def call() -> T:
            with open_learning(app.settings) as svc:
                return fn(svc)

        return await asyncio.to_thread(call)

    async def explain_failure(
        run_id: Annotated[str, Field(min_length=1, description="The failed run's id.")],
    ) -> CallToolResult:  # fmt: skip
        """Why a run failed: the failing phase or step, the error kinds, what the evidence
        (journal, log, console) says, how often this failure was seen, the learning hint
        (a lesson once seen often enough) and the candidate fix from a later passing run."""

        async def body() -> CallToolResult:
            rec = await asyncio.to_thread(app.services.get, run_id)
            doc = dict(rec.document) if rec.document is not None else None
            if doc is None:
                raise ToolError(f"argument 'run_id': run {run_id} has no result yet ({rec.status})")
            failing = failing_part(doc)
            errors = _errors(doc, failing)
            explanation = (await learning(lambda svc: svc.explain(run_id))).to_dict()
            seen, lesson = (
                learned(explanation, failing) if doc["status"] != "success" else (None, None)
            )
            line = hint(seen, lesson, app.settings.lesson_min_occurrences)
            data = {"run_id": rec.id, "kind": rec.kind, "status": doc["status"], "failing": failing,
                    "errors": errors, "evidence": evidence(doc, failing), "learning": seen,
                    "hint": line, "lesson": lesson, "candidate_fix": (lesson or {}).get("fix"),
                    "summary": _summary(doc, failing, errors)}  # fmt: skip
            return reply(
                f"{data['summary']}\nlearning: {line}\nevidence:\n{data['evidence']}", data
            )

        return await guarded(body())

    async def predict_command(
        command: Command,
        repo: Annotated[str | None, Field(description="Repository context.")] = None,
        after: Annotated[str | None, Field(description="The command run just before.")] = None,
    ) -> CallToolResult:  # fmt: skip
        """The probability that a command succeeds, from the runs seen so far."""

        async def body() -> CallToolResult:
            p = (await learning(lambda svc: svc.predict(command, repo=repo, after=after))).to_dict()
            text = f"{p['probability']:.2f} chance of success ({p['observations']} observations, level {p['level']})"
            return reply(text, p)

        return await guarded(body())

    async def related_commands(
        command: Command,
        repo: Annotated[str | None, Field(description="Only runs of this repository.")] = None,
    ) -> CallToolResult:  # fmt: skip
        """Commands usually run before and after a command, and the failures seen with it."""

        async def body() -> CallToolResult:
            r = (await learning(lambda svc: svc.related(command, repo=repo))).to_dict()
            text = f"{r['normalised']}: {r['observations']} observations; usual sequence: " + \
                " -> ".join(r.get("usual_sequence") or []) or "none"  # fmt: skip
            return reply(text, r)

        return await guarded(body())

    async def lessons(
        min_occurrences: Annotated[int | None, Field(ge=1, description="Occurrences that make a lesson (default: the setting).")] = None,
    ) -> CallToolResult:  # fmt: skip
        """Failures seen repeatedly (lessons), most frequent first, with candidate fixes."""

        async def body() -> CallToolResult:
            ls = (
                await learning(lambda svc: svc.lessons(min_occurrences=min_occurrences))
            ).to_dict()
            lines = [f"{x['occurrences']}x {x['template'][:120]}" for x in ls["lessons"]]
            return reply(
                "\n".join(lines) or f"no failure seen {ls['min_occurrences']} times yet", ls
            )

        return await guarded(body())

    return [
        make_tool(explain_failure, schemas.EXPLAIN, "Explain why a run failed"),
        make_tool(predict_command, schemas.PREDICT, "Predict whether a command succeeds"),
        make_tool(related_commands, schemas.RELATED, "Commands related to a command"),
        make_tool(lessons, schemas.LESSONS, "Lessons learned from repeated failures"),
    ]
