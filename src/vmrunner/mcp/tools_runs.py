"""The MCP tools that run things and read kept runs: ``test_configuration``,
``run_workflow``, ``exec_command``, ``get_result``, ``list_runs``, ``cancel_run``,
``get_logs`` and ``compare_runs``. Each calls the service layer and returns a bounded
result (see :mod:`vmrunner.mcp.bounded`)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from vmrunner.mcp import schemas
from vmrunner.mcp.bounded import bound_document, error_window, keep_ends, tail_window
from vmrunner.mcp.common import App, guarded, make_tool, progress, reply
from vmrunner.results import render_text

Accel = Literal["auto", "kvm", "tcg"]
RunId = Annotated[str, Field(min_length=1, description="A run id (from a result, or list_runs).")]
TEXT_BUDGET = 4096
_NAME_RE = re.compile(r"^name:\s*['\"]?([a-z0-9][a-z0-9-]{0,62})", re.MULTILINE)


class FileCopy(BaseModel):
    """A file or directory of the repository copied into the VM before the command."""

    src: str = Field(description="Path in the repository.")
    dst: str = Field(description="Absolute path in the guest.")


def summary(rec: Any) -> dict[str, Any]:
    """A kept run's summary (as ``vmrunner runs list --json`` prints it)."""
    return {"id": rec.id, "kind": rec.kind, "status": rec.status, "title": rec.title,
            "created_at": rec.created_at, "started_at": rec.started_at,
            "finished_at": rec.finished_at, "host": rec.host, "repo": rec.repo,
            "branch": rec.branch, "sha": rec.sha}  # fmt: skip


def document_reply(app: App, doc: dict[str, Any], note: str = "") -> CallToolResult:
    """A result document, bounded, with its rendering for people beside it."""
    bounded = bound_document(doc, app.budget, str(doc.get("id", "")))
    text = render_text(doc) if doc.get("kind") != "systest" else _systest_text(doc)
    head = f"run {doc.get('id')}: {doc.get('status')}{note}\n"
    return reply(keep_ends(head + text, TEXT_BUDGET, str(doc.get("id", ""))), bounded)


def _systest_text(doc: dict[str, Any]) -> str:
    from vmrunner.results.compare import render_text as compare_text
    from vmrunner.results.systest import render_text as systest_text

    text = systest_text(doc)
    if doc.get("comparison"):
        text += "\ncompared with the previous attempt:\n" + compare_text(doc["comparison"])
    return text


def recipe_file(app: App, text: str) -> Path:
    """Recipe ``text`` kept as ``<state>/mcp/recipes/<digest>/<name>.yml``: the file
    name is the recipe's name, so attempts at one recipe are learned as one subject."""
    name = (_NAME_RE.search(text) or re.match("(.*)", "recipe")).group(1)  # type: ignore[union-attr]
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = app.settings.state_dir / "mcp" / "recipes" / digest / f"{name}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _config(app: App, recipe: str | None, path: str | None, flake: str | None,
            host: str | None) -> tuple[str, str]:  # fmt: skip
    """(config, flavor) from exactly one of ``recipe``, ``path`` and ``flake``."""
    given = [n for n, v in (("recipe", recipe), ("path", path), ("flake", flake)) if v]
    if len(given) != 1:
        raise ToolError("give exactly one of the arguments 'recipe' (YAML text), 'path' (a "
                        f"recipe file in the repository) or 'flake' (with 'host'); got {given or 'none'}")  # fmt: skip
    if flake:
        if not host:
            raise ToolError(
                "argument 'host' is required with 'flake' (the nixosConfigurations name)"
            )
        return app.flake_ref(flake), "nixos"
    if path:
        return str(app.in_repo(path, "path")), "debian"
    assert recipe is not None
    return str(recipe_file(app, recipe)), "debian"


def _checks_file(app: App, checks: str | None) -> Path | None:
    if not checks:
        return None
    text = (
        checks
        if "checks:" in checks
        else "checks:\n" + "".join(f"  {ln}\n" for ln in checks.splitlines())
    )
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = app.settings.state_dir / "mcp" / "checks" / f"{digest}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _previous(app: App, run_id: str | None) -> dict[str, Any] | None:
    from vmrunner.services.comparisons import document

    return document(app.services, run_id, "argument 'compare_with'") if run_id else None


def run_tools(app: App) -> list[Tool]:
    """Every tool of this module, bound to ``app``."""
    return [make_tool(f, s, t) for f, s, t in _definitions(app)]


def _definitions(app: App) -> list[tuple[Any, dict[str, Any], str]]:
    from vmrunner.services.requests import run_filter

    async def test_configuration(
        ctx: Context,
        recipe: Annotated[str | None, Field(description="A Debian systest recipe, as YAML text (name, packages, files, units, run, checks).")] = None,
        path: Annotated[str | None, Field(description="A Debian recipe file in the repository (relative path).")] = None,
        flake: Annotated[str | None, Field(description="A flake reference for the NixOS flavour, e.g. '.' or 'github:o/r'.")] = None,
        host: Annotated[str | None, Field(description="The nixosConfigurations attribute (with 'flake').")] = None,
        checks: Annotated[str | None, Field(description="Extra runtime checks as YAML ('checks:' list: unit_active, port_open, command, file_contains, journal_lacks).")] = None,
        boot_timeout: Annotated[float, Field(gt=0, le=3600, description="Boot deadline in seconds.")] = 300.0,
        accel: Annotated[Accel | None, Field(description="auto, kvm or tcg (default: the settings').")] = None,
        compare_with: Annotated[str | None, Field(description="A previous attempt's run id: the result gets a 'comparison' with it.")] = None,
    ) -> CallToolResult:  # fmt: skip
        """Build, install, boot and check a system configuration in a fresh VM (systest) and
        return its result document: status, the failed phase, each phase's status and log
        tail, and errors with their kind (service_failed with the unit, check_failed with
        the check, build_error, boot_timeout, ...). Sends a progress notification as each
        phase starts and ends."""

        async def body() -> CallToolResult:
            from vmrunner.services.systests import SystestRequest, phase_message, run_systest

            config, flavor = _config(app, recipe, path, flake, host)
            before = await asyncio.to_thread(_previous, app, compare_with)
            req = SystestRequest(config=config, flavor=flavor, host=host, boot_timeout=boot_timeout,
                                 accel=accel or "", checks=_checks_file(app, checks))  # fmt: skip
            phases = ("preflight", "build", "install", "boot", "runtime")
            async with progress(ctx, float(len(phases))) as prog:
                doc = await run_systest(app.services, req, on_phase=lambda p: prog.put(
                    phases.index(p.name) + (1.0 if p.finished_at else 0.5), phase_message(p)))  # fmt: skip
            if before is not None:
                doc = await asyncio.to_thread(_keep_comparison, app, doc, before)
            return document_reply(app, doc)

        return await guarded(body())

    async def run_workflow(
        ctx: Context,
        path: Annotated[str | None, Field(description="A workflow file or directory in the repository (default .github/workflows).")] = None,
        event: Annotated[str, Field(description="The event name (push, pull_request, workflow_dispatch, ...).")] = "push",
        job: Annotated[list[str] | None, Field(description="Run only these jobs (and what they need).")] = None,
        inputs: Annotated[dict[str, str] | None, Field(description="workflow_dispatch inputs.")] = None,
        matrix: Annotated[dict[str, str] | None, Field(description="Only the matrix combinations with these values.")] = None,
        accel: Annotated[Accel | None, Field(description="auto, kvm or tcg.")] = None,
    ) -> CallToolResult:  # fmt: skip
        """Run the repository's workflows that the event triggers, each job in a fresh VM,
        and return the result document (jobs, steps with outcome, exit code and log tail,
        errors). Sends a progress notification as each job and step ends."""

        async def body() -> CallToolResult:
            from vmrunner.services.workflows import RunRequest
            from vmrunner.services.workflows import run_workflow as run

            flows = (app.in_repo(path, "path"),) if path else ()
            req = RunRequest(workdir=app.checkout("path"), workflows=flows, jobs=tuple(job or ()), event=event,
                             inputs=tuple((inputs or {}).items()), matrix=tuple((matrix or {}).items()),
                             accel=accel or "")  # fmt: skip
            async with progress(ctx, None) as prog:

                def sink(ev: Any) -> None:
                    if ev.type in ("job", "step") and ev.status not in (None, "started"):
                        prog.put(
                            prog.last + 1, f"{ev.type} {ev.job or ''} {ev.step or ''}: {ev.status}"
                        )

                outcome = await run(app.services, req, sink)
            note = " (no workflow is triggered by this event)" if outcome.nothing_triggered else ""
            return document_reply(app, outcome.document, note)

        return await guarded(body())

    async def exec_command(
        argv: Annotated[list[str], Field(min_length=1, description="The command and its arguments (no shell unless you run one).")],
        image: Annotated[str | None, Field(description="The image to boot (default: the default image).")] = None,
        timeout: Annotated[float | None, Field(gt=0, le=7200, description="Kill the command after this many seconds.")] = None,
        files: Annotated[list[FileCopy] | None, Field(description="Repository files copied into the guest first.")] = None,
        accel: Annotated[Accel | None, Field(description="auto, kvm or tcg.")] = None,
    ) -> CallToolResult:  # fmt: skip
        """Run one command in a fresh VM and return its result document (exit code, whether
        it timed out, the tail of its output)."""

        async def body() -> CallToolResult:
            from vmrunner.services.exec import CopySpec, ExecRequest, run_exec

            copies = tuple(
                CopySpec(str(app.in_repo(f.src, "files.src")), f.dst) for f in files or []
            )
            req = ExecRequest(
                argv=tuple(argv), image=image, accel=accel, timeout=timeout, copy_in=copies
            )
            doc = await run_exec(
                app.services, req, on_stdout=lambda _b: None, on_stderr=lambda _b: None
            )
            return document_reply(app, doc)

        return await guarded(body())

    async def get_result(
        run_id: RunId,
        job: Annotated[str | None, Field(description="Only the job whose name or id contains this.")] = None,
        phase: Annotated[Literal["preflight", "build", "install", "boot", "runtime"] | None, Field(description="Only this systest phase.")] = None,
    ) -> CallToolResult:  # fmt: skip
        """A kept run: its summary and result document, or one job or phase of it."""

        async def body() -> CallToolResult:
            rec = await asyncio.to_thread(app.services.get, run_id)
            doc = dict(rec.document) if rec.document is not None else None
            if doc is None:
                return reply(f"run {rec.id}: {rec.status} (no result yet)",
                             {"run": summary(rec), "document": None, "part": None})  # fmt: skip
            if job is None and phase is None:
                reply_ = document_reply(app, doc)
                data = {"run": summary(rec), "document": reply_.structured_content, "part": None}
                return reply(str(getattr(reply_.content[0], "text", "")), data)
            part = _part(doc, job, phase)
            bounded = bound_document(part, app.budget, rec.id)
            text = f"run {rec.id}: {rec.status}; {(job and 'job ' + job) or 'phase ' + str(phase)}"
            return reply(text, {"run": summary(rec), "document": None, "part": bounded})

        return await guarded(body())

    async def list_runs(
        kind: Annotated[Literal["exec", "workflow", "systest"] | None, Field(description="Only runs of this kind.")] = None,
        status: Annotated[str | None, Field(description="Only runs with this status (queued, running, success, failure, cancelled, timeout, error).")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="At most this many (newest first).")] = 20,
    ) -> CallToolResult:  # fmt: skip
        """The newest kept runs (exec, workflow, systest), newest first."""

        async def body() -> CallToolResult:
            flt = run_filter(kind=kind, status=status, limit=limit)
            found = await asyncio.to_thread(app.services.list_runs, flt)
            lines = [f"{r.id} {r.kind} {r.status} {r.title}" for r in found] or ["no runs"]
            return reply(
                keep_ends("\n".join(lines), TEXT_BUDGET, ""), {"runs": [summary(r) for r in found]}
            )

        return await guarded(body())

    async def cancel_run(
        run_id: RunId,
        wait_s: Annotated[float, Field(ge=0, le=600, description="Wait up to this many seconds for it to end.")] = 30.0,
    ) -> CallToolResult:  # fmt: skip
        """Cancel a queued or running run, wherever it runs; waits for it to end."""

        async def body() -> CallToolResult:
            rec = await asyncio.to_thread(app.services.cancel, run_id)
            if rec.active and wait_s > 0:
                rec = await app.services.wait(run_id, timeout=wait_s)
            return reply(
                f"run {rec.id}: {rec.status}", {"run": summary(rec), "ended": not rec.active}
            )

        return await guarded(body())

    async def get_logs(
        run_id: RunId,
        job: Annotated[str | None, Field(description="A job's log (name contains this) instead of the run's output log.")] = None,
        mode: Annotated[Literal["tail", "error"], Field(description="tail: the last lines; error: the lines around the first error.")] = "tail",
        lines: Annotated[int, Field(ge=1, le=2000, description="How many lines.")] = 100,
    ) -> CallToolResult:  # fmt: skip
        """A bounded window of a run's log: its last lines, or the lines around its first error."""

        async def body() -> CallToolResult:
            files = await asyncio.to_thread(app.services.log_files, run_id, job)
            if not files:
                raise ToolError(f"argument 'run_id': run {run_id} has no log")
            name, file = files[0]
            text = await asyncio.to_thread(_read, file)
            all_lines = text.splitlines()
            win = (error_window if mode == "error" else tail_window)(all_lines, lines)
            shown = keep_ends(win.text, app.budget, run_id)
            data = {"run_id": run_id, "log": name, "mode": mode, "first_line": win.first,
                    "last_line": win.last, "total_lines": win.total, "truncated": win.truncated,
                    "text": shown, "error_line": win.error_line, "logs": [n for n, _ in files]}  # fmt: skip
            head = f"{name} of run {run_id}, lines {win.first}-{win.last} of {win.total}:\n"
            return reply(keep_ends(head + shown, app.budget, run_id), data)

        return await guarded(body())

    async def compare_runs(
        before: Annotated[str, Field(min_length=1, description="The earlier attempt's run id.")],
        after: Annotated[str, Field(min_length=1, description="The later attempt's run id.")],
    ) -> CallToolResult:  # fmt: skip
        """What changed between two attempts: phases, steps and checks that changed status,
        error kinds that appeared or went away, units that changed state, durations."""

        async def body() -> CallToolResult:
            from vmrunner.services.comparisons import compare_runs as compare

            cmp = await asyncio.to_thread(compare, app.services, before, after)
            return reply(cmp["summary"], cmp)

        return await guarded(body())

    return [
        (test_configuration, schemas.RESULT, "Test a system configuration in a VM"),
        (run_workflow, schemas.RESULT, "Run GitHub Actions workflows in VMs"),
        (exec_command, schemas.RESULT, "Run one command in a fresh VM"),
        (get_result, schemas.GET_RESULT, "Get a run's result"),
        (list_runs, schemas.LIST_RUNS, "List runs"),
        (cancel_run, schemas.CANCEL_RUN, "Cancel a run"),
        (get_logs, schemas.GET_LOGS, "Read a run's log"),
        (compare_runs, schemas.COMPARE, "Compare two attempts"),
    ]


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _part(doc: dict[str, Any], job: str | None, phase: str | None) -> dict[str, Any]:
    """The job (name or id contains ``job``) or phase of ``doc``, with its errors."""
    if phase is not None:
        found = [p for p in doc.get("phases") or [] if p.get("name") == phase]
        errors = [e for e in doc.get("errors") or [] if e.get("phase") == phase]
    else:
        assert job is not None
        found = [
            j for j in doc.get("jobs") or [] if job in str(j.get("name")) or job in str(j.get("id"))
        ]
        errors = [e for e in doc.get("errors") or [] if job in str(e.get("job", ""))]
    if not found:
        what = f"phase {phase!r}" if phase else f"a job matching {job!r}"
        raise ToolError(
            f"argument {'phase' if phase else 'job'!r}: run {doc.get('id')} has no {what}"
        )
    return {"items": found, "errors": errors}


def _keep_comparison(app: App, doc: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    from vmrunner.services.comparisons import attach_comparison

    return attach_comparison(app.services, doc, before)
