"""Workflows in the service layer: check workflow files, and run the workflows an event
triggers as one kept run (``run_workflow``), its result also written beside its job logs
(``state_dir/runs/<id>/result.json``).

Nothing here prints: live output goes out as events (:mod:`vmrunner.services.events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from vmrunner.config import Settings
from vmrunner.errors import ConfigError
from vmrunner.learning import Observation
from vmrunner.results import ErrorEntry, RunDocument, validate_result
from vmrunner.runner import remote_actions
from vmrunner.runner.context import (
    BASE_EVENTS,
    EventSpec,
    GitInfo,
    RunInfo,
    base_workflow_files,
    git_info,
    github_context,
    group_scope,
    is_fork_pull_request,
)
from vmrunner.runner.engine import RunEnv, WorkflowExecution
from vmrunner.runner.guest import Guest
from vmrunner.runner.output import NullReporter, Reporter, mask_tree
from vmrunner.runner.tool_cache import from_settings as tool_cache_from
from vmrunner.runner.values import flag_value, text_value
from vmrunner.services import learning as learn_service
from vmrunner.services import machines
from vmrunner.services.checks import check_event, workflow_files
from vmrunner.services.events import Event, EventReporter, LogFile, fan_out
from vmrunner.services.planning import dispatch_inputs as dispatch_inputs  # re-exported
from vmrunner.services.planning import (
    load_file,
    matrix_filter,
    plan_run,
    platform_map,
    read_payload,
    relative,
    request_event,
)
from vmrunner.services.runrequest import RunRequest as RunRequest  # re-exported
from vmrunner.store.concurrency import ConcurrencyStore, run_in_group
from vmrunner.toolkit.artifacts import read_artifacts
from vmrunner.toolkit.run import identity as toolkit_identity
from vmrunner.toolkit.run import run_toolkit
from vmrunner.workflow.expressions import to_string
from vmrunner.workflow.masking import Masker
from vmrunner.workflow.model import Workflow


@dataclass
class RunOutcome:
    """What ``run_workflows`` returns: the result document (as a dict, masked and valid)
    and which workflows ran or were not triggered (with the reason)."""

    document: dict[str, Any]
    ran: list[str] = field(default_factory=list)
    not_triggered: list[tuple[str, str]] = field(default_factory=list)

    @property
    def nothing_triggered(self) -> bool:
        return not self.ran and not self.document["errors"]

    @property
    def exit_status(self) -> int:
        status = self.document["status"]
        return 0 if status == "success" else 125 if status == "error" else 1


class VmFactory:
    """Fresh VMs from the service layer, one per job instance. Every VM gets the same
    QEMU name: the name is part of the snapshot key, so per-job names would make every
    job boot cold."""

    def __init__(self, settings: Settings, accel: str) -> None:
        self.settings, self.requested = settings, accel
        self.accel: str | None = None

    def __call__(self, image: str, name: str) -> contextlib.AbstractAsyncContextManager[Guest]:
        return self._machine(image, name)

    @contextlib.asynccontextmanager
    async def _machine(self, image: str, name: str) -> AsyncIterator[Guest]:
        async with machines.machine(
            self.settings, image=image, accel=self.requested, cpus=self.settings.cpus,
            memory_mib=self.settings.memory_mib, name="job",
        ) as vm:  # fmt: skip
            self.accel = vm.spec.accel.value
            yield vm


async def _run_one(env: RunEnv, workflow: Workflow, file: str, order: int) -> None:
    """One workflow, inside its workflow-level concurrency group when it has one."""
    name = to_string(getattr(workflow.name, "value", None) or file)
    run = dataclasses.replace(env.run, workflow_name=name, workflow_file=file)
    inputs = dispatch_inputs(workflow, env.run.event)
    execution = WorkflowExecution(env, workflow, file, inputs=inputs, order=(order,), run=run)
    store = env.store
    if workflow.concurrency is None or store is None:
        await execution.run()
        return
    ctx = {"github": github_context(run, ""), "inputs": inputs, "vars": dict(env.vars)}
    shown = text_value(workflow.concurrency.group, ctx)
    group = f"workflow:{group_scope(env.run.git)}:{shown}"  # per repository, as on GitHub
    cip = flag_value(workflow.concurrency.cancel_in_progress, ctx)
    env.reporter.message(f"{file}: concurrency group '{shown}'")
    outcome = await run_in_group(store, group, f"{env.run.run_id}/{file}", cip, execution.run)
    if outcome.cancelled == "pending":
        env.errors.append(ErrorEntry(
            "cancelled", f"a newer run in concurrency group '{shown}' cancelled this one", file=file
        ))  # fmt: skip
        for job in workflow.jobs:
            execution._record(job, job.display_name, {}, (0,), "cancelled")
    elif outcome.cancelled == "running":
        env.errors.append(
            ErrorEntry("cancelled", "cancelled by a newer run (cancel-in-progress)", file=file)
        )


def _status(env: RunEnv, load_errors: bool) -> str:
    if env.harness_failed or load_errors:
        return "error"
    results = [e.status for _, e in env.entries]
    if any(e.kind == "cancelled" for e in env.errors) or (
        results and all(r == "cancelled" for r in results)
    ):
        return "cancelled"
    if "failure" in results or "cancelled" in results:
        timeouts = any(e.kind == "timeout" for e in env.errors)
        failed_plain = any(
            s.outcome == "failure" and not s.timed_out for _, e in env.entries for s in e.steps
        )
        return "timeout" if timeouts and not failed_plain else "failure"
    return "success"


@dataclass(frozen=True)
class RunSlot:
    """Where a workflow run is kept: its id (also its number), directory and the
    concurrency groups of the store."""

    run_id: str
    run_dir: Path
    groups: ConcurrencyStore | None


async def run_workflows(
    settings: Settings, req: RunRequest, slot: RunSlot, reporter: Reporter | None = None,
    factory: Any = None,
) -> RunOutcome:  # fmt: skip
    """Run every workflow ``req``'s event triggers, each job instance in a fresh VM, and
    write the result beside the run (``result.json``). A job that fails is a result, not
    an exception; an invalid workflow gives status ``error``. Raises ``ConfigError`` for
    bad flags or no git repository."""
    reporter = reporter or NullReporter()
    started = time.time()
    git, event = request_event(req, git_info(req.workdir))
    files = workflow_files(req.workflows, git.root)
    settings.ensure_dirs()
    run_id, number, run_dir = slot.run_id, int(slot.run_id), slot.run_dir
    source = git.root  # pull_request_target, workflow_run: the base commit's workflows
    if event.name in BASE_EVENTS:
        source = run_dir / "base"
        files = base_workflow_files(git.root, event.sha, files, source)
    secrets = {} if is_fork_pull_request(event) else dict(req.secrets)
    masker = Masker(v for _, v in req.secrets)
    factory = factory or VmFactory(settings, req.accel)
    load_errors: list[ErrorEntry] = []
    to_run: list[tuple[Workflow, str]] = []
    outcome = RunOutcome({})
    for file in files:
        workflow, reason, errors = load_file(file, event, source)
        reason = None if req.triggered else reason
        rel = relative(file, source.resolve())
        load_errors += errors
        if workflow is not None and reason is None:
            to_run.append((workflow, rel))
            outcome.ran.append(rel)
        elif workflow is not None and reason is not None:
            outcome.not_triggered.append((rel, reason))
    env = RunEnv(
        RunInfo(run_id, number, "", "", git, event), factory, reporter, masker, run_dir,
        slot.groups, dict(req.vars), secrets,
        platform_map(settings.label_images, req), req.actions_dirs or (settings.state_dir / "actions",),
        req.max_parallel or settings.max_parallel or None, matrix_filter(req), req.jobs, dict(req.env), req.strict_platforms,
    )  # fmt: skip
    env.remote = remote_actions.from_settings(settings)
    env.tool_cache = tool_cache_from(settings)
    env.errors.extend(load_errors)
    who = toolkit_identity(
        git.repository, event.ref or f"refs/heads/{git.branch}", event.base_ref, event.payload
    )
    async with run_toolkit(run_dir, settings.cache_dir / "toolkit-cache", who) as env.toolkit:
        await asyncio.gather(*(_run_one(env, wf, rel, i) for i, (wf, rel) in enumerate(to_run)))
    document = _document(env, git, event, started, files, outcome, factory, load_errors)
    await asyncio.to_thread(_learn, settings, document, git)
    outcome.document = document
    return outcome


def observations(document: Mapping[str, Any], git: GitInfo) -> list[Observation]:
    """One observation per step that ran, in order per job, each with the command run
    before it in the same job (``prev_command``)."""
    finished = datetime.fromisoformat(str(document["finished_at"]).replace("Z", "+00:00"))
    out: list[Observation] = []
    for job in document.get("jobs", []):
        prev: str | None = None
        for index, step in enumerate(job.get("steps", []), start=1):
            command = str(step.get("command") or "")
            if step.get("outcome") == "skipped" or not command:
                continue
            code = step.get("exit_code")
            exit_code = (
                124
                if step.get("timed_out")
                else (code if code is not None else (0 if step["outcome"] == "success" else 1))
            )
            out.append(
                Observation(
                    command=command, exit_code=int(exit_code), duration_s=float(step.get("duration_s") or 0.0),
                    finished_at=finished, run_id=str(document["id"]), job=str(job["id"]), step=index,
                    step_name=str(step.get("name") or ""), repo=git.repository, branch=git.branch or "",
                    workflow=str(job.get("workflow") or ""), commit=git.sha, image=str(job.get("image") or ""),
                    kind="step", prev_command=prev, output=str(step.get("log_tail") or ""),
                    env={str(k): str(v) for k, v in (job.get("env") or {}).items()},
                )
            )  # fmt: skip
            prev = command
    return out


def _learn(settings: Settings, document: dict[str, Any], git: GitInfo) -> None:
    """Record the run's steps in the learning store; a failed run gets its hints."""
    failed = document["status"] != "success"
    hints = learn_service.record(
        settings, observations(document, git), hints_for=str(document["id"]) if failed else None
    )
    if failed:
        document["learning"] = hints


def _document(
    env: RunEnv, git: GitInfo, event: EventSpec, started: float, files: list[Path],
    outcome: RunOutcome, factory: Any, load_errors: list[ErrorEntry],
) -> dict[str, Any]:  # fmt: skip
    entries = tuple(e for _, e in sorted(env.entries, key=lambda pair: pair[0]))
    trigger = {
        "event": event.name, "ref": event.ref, "sha": event.sha, "repository": git.repository,
        "workdir": str(git.root), "workflows": outcome.ran,
        "not_triggered": [{"workflow": f, "reason": r} for f, r in outcome.not_triggered],
        "run_number": env.run.run_number,
    }  # fmt: skip
    doc = RunDocument(
        env.run.run_id, "workflow", _status(env, bool(load_errors)), started, time.time(),  # type: ignore[arg-type]
        getattr(factory, "accel", None), tuple(env.errors), entries, trigger,
        artifacts=tuple(a.summary() for a in read_artifacts(env.run_dir)),
    )  # fmt: skip
    masked: dict[str, Any] = mask_tree(env.masker, doc.to_dict())
    problems = validate_result(masked)
    if problems:  # a bug: say so in the document rather than lose the result
        masked["errors"].append(
            {"kind": "harness", "message": "invalid result: " + "; ".join(problems)}
        )
    return masked


def _request_data(req: RunRequest) -> dict[str, Any]:
    """What is kept of a workflow request: never the secrets' values."""
    data = dataclasses.asdict(req)
    data["secrets"] = [k for k, _ in req.secrets]
    kept: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return kept


async def run_workflow(
    services: Any, req: RunRequest, sink: Callable[[Event], None] | None = None,
    factory: Any = None, handle: Any = None,
) -> RunOutcome:  # fmt: skip
    """Run the workflows ``req``'s event triggers as one kept run of kind ``workflow``,
    its live events on ``sink`` and in the run's live log. Raises ``ConfigError`` before
    anything is kept when the directory is not a git repository or a flag is bad. With
    ``handle`` (a run kept earlier, see ``Services.adopt``) that run is executed."""
    req = dataclasses.replace(req, accel=req.accel or services.settings.accel or "auto")
    if req.accel not in ("auto", "kvm", "tcg"):
        raise ConfigError(f"--accel must be auto, kvm or tcg, got {req.accel!r}")
    if req.max_parallel is not None and req.max_parallel < 1:
        raise ConfigError(f"--max-parallel must be at least 1, got {req.max_parallel}")
    check_event(req.event)
    git = git_info(req.workdir)
    files = workflow_files(req.workflows, git.root)  # bad paths: an error before the run is kept
    read_payload(req.event_path)
    if req.jobs:  # an unknown -j job: an error before the run is kept
        plan_run(req, git, files, services.settings.label_images)
    handle = handle or services.accept(
        "workflow", _request_data(req), title=f"{req.event} {git.repository}",
        repo=git.repository, branch=git.branch, sha=git.sha,
    )  # fmt: skip
    started = time.time()
    box: dict[str, RunOutcome] = {}
    live = LogFile(handle.output_log)
    reporter = EventReporter(fan_out([live, *([sink] if sink else [])]))

    def fallback(status: str, message: str) -> dict[str, Any]:
        kind = "cancelled" if status == "cancelled" else "harness"
        return RunDocument(handle.id, "workflow", status, started, time.time(),  # type: ignore[arg-type]
                           errors=(ErrorEntry(kind, message),)).to_dict()  # fmt: skip

    async def body(h: Any) -> dict[str, Any]:
        slot = RunSlot(h.id, h.dir, services.concurrency)
        box["outcome"] = await run_workflows(services.settings, req, slot, reporter, factory)
        for log in sorted((h.dir / "logs").glob("*.log")):
            h.add_log(f"job/{log.stem}", log)
        document: dict[str, Any] = box["outcome"].document
        return document

    try:
        document = await services.execute(handle, body, fallback)
    finally:
        live.close()
    outcome = box.get("outcome") or RunOutcome(document)
    outcome.document = document
    return outcome
