"""The run service: check workflow files, run the workflows an event triggers, and keep
their results (``state_dir/runs/<run_id>/result.json`` with the job logs beside it).

Called by the CLI (``vmrunner check``, ``vmrunner run``) and later by the API. Nothing
here prints: live output goes to a :class:`~vmrunner.runner.output.Reporter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import secrets as pysecrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from vmrunner import learn_service, service
from vmrunner.config import Settings
from vmrunner.errors import ConfigError, UserInputError
from vmrunner.learning import Observation
from vmrunner.results import ErrorEntry, RunDocument, validate_result
from vmrunner.runner.concurrency_store import ConcurrencyStore, run_in_group
from vmrunner.runner.context import (
    EventSpec,
    GitInfo,
    RunInfo,
    git_info,
    github_context,
    make_event,
)
from vmrunner.runner.engine import RunEnv, WorkflowExecution
from vmrunner.runner.guest import Guest
from vmrunner.runner.output import NullReporter, Reporter, mask_tree
from vmrunner.runner.values import flag_value, text_value
from vmrunner.workflow.check import (
    Diagnostic,
    WorkflowError,
    check_file,
    file_resolver,
    load_workflow,
)
from vmrunner.workflow.expressions import to_string
from vmrunner.workflow.masking import Masker
from vmrunner.workflow.model import Workflow
from vmrunner.workflow.schema import to_data
from vmrunner.workflow.triggers import triggered

Pairs = tuple[tuple[str, str], ...]


def workflow_files(paths: Sequence[Path], root: Path) -> list[Path]:
    """The workflow files named by ``paths`` (files, or directories holding ``*.yml`` and
    ``*.yaml``); ``root/.github/workflows`` when none is given."""
    found: list[Path] = []
    for path in paths or [root / ".github" / "workflows"]:
        if path.is_dir():
            found += sorted(
                p for p in path.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file()
            )
        elif path.exists():
            found.append(path)
        else:
            raise ConfigError(f"{path} does not exist")
    return found


def check_paths(paths: Sequence[Path], cwd: Path) -> list[Diagnostic]:
    """Every problem in the workflow files under ``paths`` (default
    ``.github/workflows`` of ``cwd``), sorted by file and position."""
    out: list[Diagnostic] = []
    for file in workflow_files(paths, cwd):
        out += check_file(file)
    return out


def parse_pairs(items: Sequence[str], flag: str, sep: str = "=") -> Pairs:
    """``K=V`` strings as pairs; raises ``ConfigError`` naming ``flag``."""
    pairs = []
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key:
            raise ConfigError(f"{flag} expects K{sep}V, got {item!r}")
        pairs.append((key, value))
    return tuple(pairs)


def read_secret_file(path: Path) -> Pairs:
    """A dotenv-style file of secrets: ``K=V`` lines, ``#`` comments, blank lines."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"--secret-file {path}: {exc}") from exc
    wanted = [
        ln.removeprefix("export ").strip()
        for ln in lines
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    return tuple((k, v.strip().strip("'\"")) for k, v in parse_pairs(wanted, "--secret-file"))


@dataclass(frozen=True)
class RunRequest:
    """One ``vmrunner run``."""

    workdir: Path
    workflows: tuple[Path, ...] = ()
    jobs: tuple[str, ...] = ()
    event: str = "push"
    event_path: Path | None = None
    inputs: Pairs = ()
    secrets: Pairs = ()
    vars: Pairs = ()
    matrix: Pairs = ()
    max_parallel: int | None = None
    accel: str = "auto"
    actions_dirs: tuple[Path, ...] = ()


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
        async with service.machine(
            self.settings, image=image, accel=self.requested, cpus=self.settings.cpus,
            memory_mib=self.settings.memory_mib, name="job",
        ) as vm:  # fmt: skip
            self.accel = vm.spec.accel.value
            yield vm


def runs_dir(settings: Settings) -> Path:
    return settings.state_dir / "runs"


def load_result(settings: Settings, run_id: str) -> dict[str, Any]:
    """The stored result of run ``run_id``; raises ``ConfigError`` when there is none."""
    path = runs_dir(settings) / run_id / "result.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no result for run {run_id!r} ({exc})") from exc
    return data


def _new_run(settings: Settings) -> tuple[str, int, Path]:
    """A fresh run id (digits, like GitHub's), its run number and directory."""
    base = runs_dir(settings)
    base.mkdir(parents=True, exist_ok=True)
    with (base / "counter.lock").open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        counter = base / "counter"
        number = int(counter.read_text() or 0) + 1 if counter.exists() else 1
        counter.write_text(str(number))
    while True:
        run_id = f"{time.time_ns() // 1000}{pysecrets.randbelow(100):02d}"
        try:
            (base / run_id).mkdir()
            return run_id, number, base / run_id
        except FileExistsError:
            continue


def _load(file: Path, event: EventSpec) -> tuple[Workflow | None, str | None, list[ErrorEntry]]:
    """The workflow in ``file`` and whether ``event`` triggers it (None) or why not."""
    try:
        workflow = load_workflow(file.read_text("utf-8"), str(file), resolver=file_resolver(file))
    except WorkflowError as exc:
        return None, None, [
            ErrorEntry("workflow", d.message, file=d.file, line=d.line, col=d.col) for d in exc.diagnostics
        ]  # fmt: skip
    except (OSError, UnicodeDecodeError) as exc:
        return None, None, [ErrorEntry("workflow", f"cannot read the file: {exc}", file=str(file))]
    on = workflow.node.get("on")
    try:
        decision = triggered(to_data(on) if on is not None else {}, event.name, event.info())
    except UserInputError as exc:
        return None, None, [ErrorEntry("workflow", str(exc), file=str(file))]
    return workflow, None if decision.matched else decision.reason, []


def dispatch_inputs(workflow: Workflow, event: EventSpec) -> dict[str, Any]:
    """The ``inputs`` context of a ``workflow_dispatch`` run: the given inputs over the
    declared defaults, booleans and numbers typed as declared; the given ones otherwise."""
    if event.name != "workflow_dispatch":
        return dict(event.inputs)
    inputs: dict[str, Any] = dict(event.inputs)
    for declared in workflow.on.inputs("workflow_dispatch"):
        value = inputs.get(declared.name)
        if value is None:
            default = getattr(declared.default, "value", None)
            value = "" if default is None else default
        if declared.type == "boolean" and isinstance(value, str):
            value = value.lower() == "true"
        elif declared.type == "number" and isinstance(value, str) and value:
            try:
                value = float(value) if "." in value else int(value)
            except ValueError:
                pass
        inputs[declared.name] = value
    return inputs


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
    group = f"workflow:{text_value(workflow.concurrency.group, ctx)}"
    cip = flag_value(workflow.concurrency.cancel_in_progress, ctx)
    env.reporter.message(f"{file}: concurrency group '{group[9:]}'")
    outcome = await run_in_group(store, group, f"{env.run.run_id}/{file}", cip, execution.run)
    if outcome.cancelled == "pending":
        env.errors.append(ErrorEntry(
            "cancelled", f"a newer run in concurrency group '{group[9:]}' cancelled this one", file=file
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


async def run_workflows(
    settings: Settings, req: RunRequest, reporter: Reporter | None = None, factory: Any = None
) -> RunOutcome:
    """Run every workflow ``req``'s event triggers, each job instance in a fresh VM, and
    store the result. A job that fails is a result, not an exception; an invalid workflow
    gives status ``error``. Raises ``ConfigError`` for bad flags or no git repository."""
    reporter = reporter or NullReporter()
    started = time.time()
    git = git_info(req.workdir)
    payload = _payload(req.event_path)
    event = make_event(git, req.event, payload, dict(req.inputs))
    files = workflow_files(req.workflows, git.root)
    settings.ensure_dirs()
    run_id, number, run_dir = _new_run(settings)
    masker = Masker(v for _, v in req.secrets)
    factory = factory or VmFactory(settings, req.accel)
    load_errors: list[ErrorEntry] = []
    to_run: list[tuple[Workflow, str]] = []
    outcome = RunOutcome({})
    for file in files:
        workflow, reason, errors = _load(file, event)
        rel = _relative(file, git.root)
        load_errors += errors
        if workflow is not None and reason is None:
            to_run.append((workflow, rel))
            outcome.ran.append(rel)
        elif workflow is not None and reason is not None:
            outcome.not_triggered.append((rel, reason))
    env = RunEnv(
        RunInfo(run_id, number, "", "", git, event), factory, reporter, masker, run_dir,
        ConcurrencyStore(settings.state_dir / "concurrency"), dict(req.vars), dict(req.secrets),
        settings.label_images, req.actions_dirs or (settings.state_dir / "actions",),
        req.max_parallel, dict(req.matrix), req.jobs,
    )  # fmt: skip
    env.errors.extend(load_errors)
    await asyncio.gather(*(_run_one(env, wf, rel, i) for i, (wf, rel) in enumerate(to_run)))
    document = _document(env, git, event, started, files, outcome, factory, load_errors)
    await asyncio.to_thread(_learn, settings, document, git)
    outcome.document = document
    (run_dir / "result.json").write_text(json.dumps(document, indent=2))
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


def _relative(file: Path, root: Path) -> str:
    try:
        return str(file.resolve().relative_to(root))
    except ValueError:
        return str(file)


def _payload(path: Path | None) -> Mapping[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--eventpath {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--eventpath {path}: the payload must be a JSON object")
    return data


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
    )  # fmt: skip
    masked: dict[str, Any] = mask_tree(env.masker, doc.to_dict())
    problems = validate_result(masked)
    if problems:  # a bug: say so in the document rather than lose the result
        masked["errors"].append(
            {"kind": "harness", "message": "invalid result: " + "; ".join(problems)}
        )
    return masked
