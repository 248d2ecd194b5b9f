"""Scheduling a workflow's jobs with GitHub's semantics, each job instance in its own VM.

A job starts as soon as the jobs it needs have finished (no stage barrier). Its ``if:``
gets the implicit ``success()`` over its ancestors; its ``strategy.matrix`` is expanded
(include, exclude, the 256-job limit) and the instances run under ``max-parallel`` with
``fail-fast``; job-level ``concurrency`` is shared through the state directory; a
``uses: ./.github/workflows/x.yml`` job runs the called workflow's jobs in place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmrunner.errors import UserInputError, VmrunnerError
from vmrunner.repopath import is_inside, repo_resolver
from vmrunner.results import ErrorEntry, JobEntry, StepEntry
from vmrunner.runner.context import (
    RunInfo,
    default_env,
    github_context,
    group_scope,
    is_fork_pull_request,
    runner_context,
)
from vmrunner.runner.guest import MachineFactory
from vmrunner.runner.node_actions import run_post_steps, run_pre_steps
from vmrunner.runner.output import Reporter
from vmrunner.runner.remote_actions import RemoteActions
from vmrunner.runner.steps import Frame, JobState, run_step
from vmrunner.runner.tool_cache import Restored, ToolCache, tools_env
from vmrunner.runner.uses_steps import run_uses
from vmrunner.runner.values import env_value, flag_value, node_value, number_value, text_value
from vmrunner.store.concurrency import ConcurrencyStore, run_in_group
from vmrunner.toolkit.run import RunToolkit
from vmrunner.toolkit.tunnel import TunnelError
from vmrunner.vm.machine import ExecOptions
from vmrunner.vm.records import new_record_dir
from vmrunner.workflow.check import load_workflow
from vmrunner.workflow.expressions import to_string
from vmrunner.workflow.masking import Masker
from vmrunner.workflow.matrix import expand_matrix, job_display_name, strategy_context
from vmrunner.workflow.model import Job, Step, Workflow
from vmrunner.workflow.plan import JobGraph, NeedsStatus, job_should_run, needs_context

DEFAULT_LABELS = {
    "ubuntu-latest": "debian", "ubuntu-24.04": "debian", "ubuntu-22.04": "debian",
    "self-hosted": "debian", "linux": "debian", "x64": "debian",
}  # fmt: skip
DEFAULT_JOB_MINUTES = 360.0
CANCEL_GRACE_SECONDS = 300.0
"""How long the steps that run after a cancellation (``always()``, ``cancelled()``) may
take together, from the cancellation."""


@dataclass
class RunEnv:
    """What every job of one ``vmrunner run`` shares."""

    run: RunInfo
    factory: MachineFactory
    reporter: Reporter
    masker: Masker
    run_dir: Path
    store: ConcurrencyStore | None = None
    vars: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    label_images: Mapping[str, str] = field(default_factory=dict)
    actions_dirs: Sequence[Path] = ()
    max_parallel: int | None = None
    matrix_filter: Mapping[str, str | Collection[str]] = field(default_factory=dict)
    """act's ``--matrix K:V``: a combination with key K runs only with one of the values."""
    job_filter: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    """act's ``--env``: over the workflow's and the job's ``env``."""
    strict_platforms: bool = False
    """A ``runs-on`` label with no image fails its job instead of skipping it."""
    entries: list[tuple[tuple[Any, ...], JobEntry]] = field(default_factory=list)
    errors: list[ErrorEntry] = field(default_factory=list)
    harness_failed: bool = False
    toolkit: RunToolkit | None = None
    """The run's artifact and cache services (each job's VM is attached to them)."""
    remote: RemoteActions | None = None
    """Fetches remote actions (``owner/repo@ref``); None: only actions directories."""
    tool_cache: ToolCache | None = None
    """Keeps ``RUNNER_TOOL_CACHE`` across VMs of an image (setting ``tool_cache``)."""


@dataclass(frozen=True)
class JobSummary:
    """What dependents see of a job (``needs.<id>``)."""

    result: str
    outputs: Mapping[str, str] = field(default_factory=dict)


class NoImageError(UserInputError):
    """A ``runs-on`` label that maps to no image (``macos-latest``, ``ubuntu-18.04``)."""


def image_for(runs_on: Any, labels: Mapping[str, str]) -> str:
    """The image of a ``runs-on`` value (label, list, or ``{group, labels}``); raises
    ``NoImageError`` for an unknown label."""
    if isinstance(runs_on, Mapping):
        runs_on = runs_on.get("labels") or []
    names = [runs_on] if isinstance(runs_on, str) else [to_string(x) for x in runs_on or []]
    table = {**DEFAULT_LABELS, **{k.lower(): v for k, v in labels.items()}}
    unknown = [n for n in names if n.lower() not in table]
    if unknown or not names:
        label = (unknown or [""])[0]
        raise NoImageError(
            f"runs-on label '{label}' maps to no image (known labels: {', '.join(sorted(table))}); "
            f"map it with -P {label}=IMAGE or label_images in the config file"
        )
    return table[names[0].lower()]


def matrix_selected(combo: Mapping[str, Any], wanted: Mapping[str, str | Collection[str]]) -> bool:
    """act's ``--matrix`` selection: every key of ``combo`` that ``wanted`` names has one of
    the wanted values (as strings); keys ``combo`` lacks are no constraint."""
    for key, values in wanted.items():
        allowed = {values} if isinstance(values, str) else set(values)
        if key in combo and to_string(combo[key]) not in allowed:
            return False
    return True


def aggregate(results: Sequence[str]) -> str:
    """One result from several (a matrix, a called workflow)."""
    for worst in ("failure", "cancelled"):
        if worst in results:
            return worst
    if results and all(r == "skipped" for r in results):
        return "skipped"
    return "success"


async def _after_cancel(state: JobState, frame: Frame, job: Job, entries: list[StepEntry]) -> None:
    """The job was cancelled during step ``len(entries)``: record that step as cancelled,
    then run the remaining steps whose ``if:`` holds with ``job.status == 'cancelled'``
    (``always()``, ``cancelled()``; not the implicit ``success()``), under a fresh
    deadline of :data:`CANCEL_GRACE_SECONDS`. A second cancellation stops them; the
    caller re-raises the cancellation (and tears the VM down) afterwards."""
    interrupted = job.steps[len(entries)] if len(entries) < len(job.steps) else None
    if interrupted is not None:
        step_id = (
            interrupted.id.text if interrupted.id is not None else f"__step{interrupted.index + 1}"
        )
        frame.steps_ctx[step_id] = {
            "outputs": {},
            "outcome": "cancelled",
            "conclusion": "cancelled",
        }
        entries.append(StepEntry(step_id, _step_name(interrupted), "cancelled", "cancelled"))
        state.reporter.step_finished(state.key, entries[-1])
    state.status, state.timed_out = "cancelled", False
    state.deadline = time.monotonic() + CANCEL_GRACE_SECONDS
    state.log.append("##[error]The operation was canceled.")
    try:
        async with asyncio.timeout(CANCEL_GRACE_SECONDS + 30):
            for step in job.steps[len(entries) :]:
                entries.append(await run_step(state, frame, step))
    except TimeoutError:
        state.log.append("##[error]The steps run after the cancellation timed out.")
    except VmrunnerError as exc:  # the job stays cancelled; the harness error is kept
        state.errors.append(ErrorEntry("harness", state.masker.mask_text(str(exc)), state.key))


def _step_name(step: Step) -> str:
    name = to_string(getattr(step.name, "value", "") or "")
    return name if name and "${{" not in name else f"step {step.index + 1}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "job"


class WorkflowExecution:
    """One workflow's jobs (the top-level one, or a called reusable workflow)."""

    def __init__(
        self, env: RunEnv, workflow: Workflow, file: str, *, inputs: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None, prefix: str = "", order: tuple[Any, ...] = (),
        run: RunInfo | None = None,
    ) -> None:  # fmt: skip
        self.env, self.workflow, self.file, self.prefix, self.order = (
            env,
            workflow,
            file,
            prefix,
            order,
        )
        self.info = run or env.run
        self.inputs = dict(inputs or {})
        self.secrets = dict(env.secrets if secrets is None else secrets)
        self.results: dict[str, str] = {}
        self.outputs: dict[str, dict[str, str]] = {}

    def _base(self, job_id: str) -> dict[str, Any]:
        github = github_context(self.info, job_id)
        ctx: dict[str, Any] = {
            "github": github, "vars": dict(self.env.vars), "secrets": {**self.secrets, "GITHUB_TOKEN": ""},
            "inputs": self.inputs, "needs": {}, "matrix": {}, "strategy": {},
            "runner": runner_context(self.info.layout), "job": {"status": "success"},
            "steps": {}, "env": {},
        }  # fmt: skip
        ctx["env"] = {**env_value(self.workflow.env, ctx), **self.env.env}
        return ctx

    def _selected(self) -> list[Job]:
        wanted = set(self.env.job_filter) if not self.prefix else set()
        if not wanted:
            return list(self.workflow.jobs)
        graph = JobGraph.from_needs({j.id: [n.text for n in j.needs] for j in self.workflow.jobs})
        keep = set(wanted)
        for job in wanted & set(graph.jobs):
            keep |= graph.ancestors(job)
        return [j for j in self.workflow.jobs if j.id in keep]

    async def run(self) -> dict[str, JobSummary]:
        """Run every job as soon as its needs are done; returns each job's summary."""
        jobs = {j.id: j for j in self._selected()}
        graph = JobGraph.from_needs({j.id: [n.text for n in j.needs] for j in jobs.values()})
        running: dict[str, asyncio.Task[JobSummary]] = {}
        try:
            while len(self.results) < len(graph.jobs):
                for job_id in graph.ready(self.results, running):
                    task = asyncio.create_task(self._job(jobs[job_id], graph))
                    running[job_id] = task
                done, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
                for job_id, task in list(running.items()):
                    if task in done:
                        summary = task.result()
                        self.results[job_id], self.outputs[job_id] = (
                            summary.result,
                            dict(summary.outputs),
                        )
                        del running[job_id]
        except asyncio.CancelledError:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)
            for job_id, job in jobs.items():
                if job_id not in self.results and job_id not in running:
                    self._record(job, job.display_name, {}, (len(self.order), 0), "cancelled")
            raise
        return {k: JobSummary(v, self.outputs.get(k, {})) for k, v in self.results.items()}

    def _record(
        self, job: Job, name: str, matrix: Mapping[str, Any], order: tuple[Any, ...], status: str,
        **extra: Any,
    ) -> JobEntry:  # fmt: skip
        entry = JobEntry(
            id=f"{self.prefix}{job.id}", name=f"{self.prefix.replace('/', ' / ')}{name}",
            status=status, workflow=self.file, matrix=dict(matrix), **extra,  # type: ignore[arg-type]
        )  # fmt: skip
        index = [j.id for j in self.workflow.jobs].index(job.id)
        self.env.entries.append(((*self.order, index, *order), entry))
        self.env.reporter.job_finished(entry.name, entry)
        return entry

    def _fail(self, job: Job, name: str, message: str, kind: str = "job") -> JobSummary:
        self.env.errors.append(
            ErrorEntry(
                kind,
                self.env.masker.mask_text(message),
                f"{self.prefix}{job.id}",
                file=self.file,
                line=job.pos.line,
                col=job.pos.col,
            )
        )
        self._record(job, name, {}, (0,), "failure")
        return JobSummary("failure")

    async def _job(self, job: Job, graph: JobGraph) -> JobSummary:
        ctx = self._base(job.id)
        ctx["needs"] = needs_context(graph, job.id, self.results, self.outputs)
        status = NeedsStatus.of(self.results[a] for a in graph.ancestors(job.id))
        if_source = None if job.if_ is None else to_string(getattr(job.if_, "value", ""))
        try:
            if not job_should_run(if_source, ctx, status):
                self._record(job, job.display_name, {}, (0,), "skipped")
                return JobSummary("skipped")
            combos = expand_matrix(node_value(job.strategy.matrix, ctx) if job.strategy else None)
        except UserInputError as exc:
            return self._fail(job, job.display_name, f"job '{job.id}': {exc}")
        combos = [c for c in combos if matrix_selected(c, self.env.matrix_filter)]
        if not combos:
            self._record(job, job.display_name, {}, (0,), "skipped")
            return JobSummary("skipped")
        fail_fast = flag_value(job.strategy.fail_fast, ctx, True) if job.strategy else True
        limit = number_value(job.strategy.max_parallel, ctx) if job.strategy else None
        limit = int(limit) if limit else (self.env.max_parallel or len(combos))
        sem = asyncio.Semaphore(max(1, min(limit, self.env.max_parallel or limit)))
        tasks = [
            asyncio.create_task(
                self._instance(job, ctx, combo, i, len(combos), fail_fast, limit, sem)
            )
            for i, combo in enumerate(combos)
        ]
        pending, stopped = set(tasks), set[asyncio.Task[JobSummary]]()
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                failed = any(not t.cancelled() and t.result().result == "failure" for t in done)
                if failed and fail_fast:
                    for task in pending - stopped:  # once: a second cancel ends cleanup steps
                        task.cancel()
                        stopped.add(task)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        results = [t.result() for t in tasks if not t.cancelled()]
        cancelled = sum(t.cancelled() for t in tasks)
        outputs: dict[str, str] = {}
        for r in results:
            outputs.update(r.outputs)
        return JobSummary(
            aggregate([r.result for r in results] + ["cancelled"] * cancelled), outputs
        )

    async def _instance(
        self, job: Job, base: dict[str, Any], combo: dict[str, Any], index: int, total: int,
        fail_fast: bool, limit: int, sem: asyncio.Semaphore,
    ) -> JobSummary:  # fmt: skip
        ctx = {**base, "matrix": combo,
               "strategy": strategy_context(index, total, fail_fast, limit).to_context()}  # fmt: skip
        name = (
            text_value(job.name, ctx) if job.name is not None else job_display_name(job.id, combo)
        )
        order = (index,)
        try:
            async with sem:
                return await self._guarded(job, ctx, name, combo, order)
        except asyncio.CancelledError:
            self._record_cancelled(job, name, combo, order)
            raise

    def _record_cancelled(
        self, job: Job, name: str, combo: dict[str, Any], order: tuple[Any, ...]
    ) -> None:
        """Record the job instance as cancelled, unless it already recorded its result."""
        if not any(
            e.name == f"{self.prefix.replace('/', ' / ')}{name}" and e.matrix == combo
            for _, e in self.env.entries
        ):
            self._record(job, name, combo, order, "cancelled")

    async def _guarded(
        self,
        job: Job,
        ctx: dict[str, Any],
        name: str,
        combo: dict[str, Any],
        order: tuple[Any, ...],
    ) -> JobSummary:
        async def body() -> JobSummary:
            if job.uses is not None:
                return await self._call(job, ctx, name, combo, order)
            return await self._vm_job(job, ctx, name, combo, order)

        store = self.env.store
        if job.concurrency is None or store is None:
            return await body()
        scope = group_scope(self.info.git)  # per repository, as on GitHub
        group = f"job:{scope}:{text_value(job.concurrency.group, ctx)}"
        holder = f"{self.info.run_id}:{self.prefix}{job.id}:{order}"
        cip = flag_value(job.concurrency.cancel_in_progress, ctx)
        outcome = await run_in_group(store, group, holder, cip, body)
        if outcome.value is not None:
            return outcome.value
        self._record_cancelled(job, name, combo, order)
        return JobSummary("cancelled")

    async def _call(
        self,
        job: Job,
        ctx: dict[str, Any],
        name: str,
        combo: dict[str, Any],
        order: tuple[Any, ...],
    ) -> JobSummary:
        assert job.uses is not None
        ref = job.uses.text
        if not ref.startswith("./"):
            return self._fail(
                job,
                name,
                f"job '{job.id}' calls '{ref}': only local reusable workflows (./...) can run here; copy it into the repository",
            )
        path = self.env.run.git.root / ref[2:].split("@", 1)[0]
        try:
            if not is_inside(path, self.env.run.git.root):  # a symlink or '..' leads out
                raise UserInputError(f"{path} is outside the repository")
            resolver = repo_resolver(path, self.env.run.git.root)
            callee = load_workflow(path.read_text("utf-8"), str(path), resolver=resolver)
            inputs = self._call_inputs(job, callee, ctx)
        except (OSError, UserInputError) as exc:
            return self._fail(job, name, f"job '{job.id}' cannot call '{ref}': {exc}")
        secrets_node = job.secrets
        if getattr(secrets_node, "value", None) == "inherit":
            secrets = dict(self.secrets)
        else:
            secrets = {k: to_string(v) for k, v in (node_value(secrets_node, ctx) or {}).items()}
        sub = WorkflowExecution(
            self.env, callee, str(path.relative_to(self.env.run.git.root)), inputs=inputs,
            secrets=secrets, run=self.info, prefix=f"{self.prefix}{job.id}/", order=(*self.order, [j.id for j in self.workflow.jobs].index(job.id), *order),
        )  # fmt: skip
        results = await sub.run()
        jobs_ctx = {k: {"result": v.result, "outputs": dict(v.outputs)} for k, v in results.items()}
        out_ctx = {**ctx, "inputs": inputs, "jobs": jobs_ctx, "secrets": secrets}
        event = callee.on.get("workflow_call")
        declared = event.config.get("outputs") if event and event.config else None
        outputs: dict[str, str] = {}
        for key, spec in getattr(declared, "pairs", ()):
            outputs[key.text] = text_value(
                spec.get("value") if hasattr(spec, "get") else None, out_ctx
            )
        return JobSummary(aggregate([s.result for s in results.values()]), outputs)

    def _call_inputs(self, job: Job, callee: Workflow, ctx: dict[str, Any]) -> dict[str, Any]:
        given = node_value(job.with_, ctx) or {}
        inputs: dict[str, Any] = {}
        for declared in callee.on.inputs("workflow_call"):
            value = given.get(declared.name, node_value(declared.default, ctx))
            if value is None:
                value = {"boolean": False, "number": 0}.get(declared.type, "")
            inputs[declared.name] = value
        return inputs

    async def _vm_job(
        self,
        job: Job,
        ctx: dict[str, Any],
        name: str,
        combo: dict[str, Any],
        order: tuple[Any, ...],
    ) -> JobSummary:
        key = f"{self.prefix.replace('/', ' / ')}{name}"
        try:
            runs_on = node_value(job.runs_on, ctx)
            image = image_for(runs_on, self.env.label_images)
        except NoImageError as exc:
            if self.env.strict_platforms:
                return self._fail(job, name, f"job '{job.id}': {exc} (--strict-platforms)")
            return self._skip_platform(job, name, combo, order, runs_on, str(exc))
        except UserInputError as exc:
            return self._fail(job, name, f"job '{job.id}': {exc}")
        if job.container is not None or job.services is not None:
            what = "container:" if job.container is not None else "services:"
            return self._fail(
                job,
                name,
                f"job '{job.id}' uses {what}: vmrunner runs each job directly in a VM, without Docker; remove {what} and install what the job needs in its steps",
            )
        try:
            ctx["env"] = {**ctx["env"], **env_value(job.env, ctx), **self.env.env}
            minutes = number_value(job.timeout_minutes, ctx) or DEFAULT_JOB_MINUTES
            coe = flag_value(job.continue_on_error, ctx)
            defaults = job.defaults or self.workflow.defaults
            shell = text_value(defaults.shell, ctx) or None if defaults else None
            wd = text_value(defaults.working_directory, ctx) or None if defaults else None
        except UserInputError as exc:
            return self._fail(job, name, f"job '{job.id}': {exc}")
        self.env.reporter.job_started(key)
        # recorded (owner pid): gc removes it when a killed run leaves it behind
        host_work = new_record_dir(self.env.run_dir / "work", _slug(f"{self.prefix}{job.id}")).path
        started = time.monotonic()
        state: JobState | None = None
        entries: list[StepEntry] = []
        status = "failure"
        if self.env.remote is not None:  # resolved before the VM boots (errors: at the step)
            await self.env.remote.prefetch(s.uses.text for s in job.steps if s.uses is not None)
        try:
            async with self.env.factory(image, _slug(key)) as guest:
                toolkit_env = await self._toolkit_env(guest, key)
                state = JobState(
                    guest, key, ctx, {**default_env(ctx["github"], ctx["runner"]), **tools_env(self.env.run.layout), **toolkit_env, **ctx["env"]},
                    self.env.masker, self.env.reporter, self.env.run.layout, host_work,
                    self.env.run.git.root, self.env.actions_dirs, image, shell, wd,
                    time.monotonic() + minutes * 60,  # counted from when the VM is up
                    remote=self.env.remote, uses_runner=run_uses,
                )  # fmt: skip
                await self._setup(state)
                tools = await self._restore_tools(state)
                frame = Frame()
                pre = await run_pre_steps(state, frame, job.steps)
                try:
                    for step in job.steps:
                        entries.append(await run_step(state, frame, step))
                except asyncio.CancelledError:
                    await _after_cancel(state, frame, job, entries)
                    entries[:0] = pre
                    entries += await run_post_steps(state)
                    raise
                entries[:0] = pre
                entries += await run_post_steps(state)
                await self._save_tools(state, tools)
                status = "failure" if state.timed_out else state.status
                ctx["steps"] = frame.steps_ctx
        except asyncio.CancelledError:
            self._finish_job(
                job, name, combo, order, "cancelled", entries, state, started, image, {}
            )
            raise
        except VmrunnerError as exc:
            self.env.harness_failed = True
            self.env.errors.append(
                ErrorEntry("harness", self.env.masker.mask_text(str(exc)), f"{self.prefix}{job.id}")
            )
        finally:  # the scratch directory holds unmasked files (checkouts, env files)
            shutil.rmtree(host_work, ignore_errors=True)
        if state is not None and state.timed_out:
            self.env.errors.append(
                ErrorEntry(
                    "timeout",
                    f"the job timed out after {minutes:g} minutes",
                    f"{self.prefix}{job.id}",
                )
            )
        outputs: dict[str, str] = {}
        if state is not None:
            try:
                outputs = {
                    k: to_string(v)
                    for k, v in env_value(job.outputs, {**ctx, "job": {"status": status}}).items()
                }
            except UserInputError as exc:
                self.env.errors.append(ErrorEntry("job", str(exc), f"{self.prefix}{job.id}"))
        self._finish_job(job, name, combo, order, status, entries, state, started, image, outputs)
        if status == "failure" and coe:
            return JobSummary("success", outputs)
        return JobSummary(status, outputs)

    def _skip_platform(
        self, job: Job, name: str, combo: dict[str, Any], order: tuple[Any, ...], runs_on: Any,
        reason: str,
    ) -> JobSummary:  # fmt: skip
        """Skip a job instance whose ``runs-on`` maps to no image, as act does."""
        key = f"{self.prefix.replace('/', ' / ')}{name}"
        self.env.reporter.message(f"{key}: skipped: {reason}")
        labels = runs_on.get("labels") if isinstance(runs_on, Mapping) else runs_on
        label = labels if isinstance(labels, str) else ",".join(map(to_string, labels or []))
        self._record(job, name, combo, order, "skipped", runs_on=label, reason=reason)
        return JobSummary("skipped")

    def _finish_job(
        self, job: Job, name: str, combo: dict[str, Any], order: tuple[Any, ...], status: str,
        entries: list[StepEntry], state: JobState | None, started: float, image: str,
        outputs: dict[str, str],
    ) -> None:  # fmt: skip
        log_file = (
            self.env.run_dir / "logs" / f"{_slug(f'{self.prefix}{job.id}-{order}-{name}')}.log"
        )
        log_file.parent.mkdir(parents=True, exist_ok=True)
        if state is not None:
            state.log.save(log_file, state.masker)  # spooled on disk, masked per line
            self.env.errors.extend(state.errors)
        masker = state.masker if state is not None else self.env.masker  # the job's masks
        self._record(
            job, name, combo, order, status, outputs={k: masker.mask_text(v) for k, v in outputs.items()},
            steps=tuple(_mask_step(masker, e) for e in entries),
            duration_s=time.monotonic() - started, runs_on=None, image=image,
            summary="\n".join(state.summary) if state else "", log=str(log_file),
            env={k: masker.mask_text(to_string(v)) for k, v in (state.contexts.get("env") or {}).items()} if state else {},
        )  # fmt: skip

    async def _toolkit_env(self, guest: Any, key: str) -> dict[str, str]:
        """Attach the job's VM to the run's artifact and cache services; the variables
        GitHub sets for them (none without services, or when the VM cannot take them)."""
        if self.env.toolkit is None:
            return {}
        try:
            extra = await self.env.toolkit.job_env(guest, f"{key}/{time.monotonic_ns()}")
        except TunnelError as exc:
            self.env.reporter.message(f"{key}: no artifact or cache services: {exc}")
            return {}
        if extra.get("ACTIONS_RUNTIME_TOKEN"):
            self.env.masker.add(extra["ACTIONS_RUNTIME_TOKEN"])
        return extra

    async def _restore_tools(self, state: JobState) -> Restored | None:
        """The image's kept tool versions into the guest's tool cache (setting on)."""
        if self.env.tool_cache is None:
            return None
        tc = state.layout.tool_cache
        return await self.env.tool_cache.restore(state.guest, state.image, tc, self._say(state))

    async def _save_tools(self, state: JobState, restored: Restored | None) -> None:
        """Keep the tool versions the job added (setting on), unless the job ran a fork's
        pull request: the store is shared by every run of the image on this host, and
        code from outside must not plant a tool that a later run trusts."""
        if is_fork_pull_request(self.env.run.event) and restored is not None:
            self._say(state)("the tool cache is not kept from a fork's pull request")
            return
        if self.env.tool_cache is not None and restored is not None:
            tc = state.layout.tool_cache
            await self.env.tool_cache.save(state.guest, restored, tc, self._say(state))

    def _say(self, state: JobState) -> Callable[[str], None]:
        return lambda text: self.env.reporter.message(f"{state.key}: {text}")

    async def _setup(self, state: JobState) -> None:
        """The workspace, temp and tool-cache directories, and the event payload file."""
        import json

        layout = state.layout
        script = (
            'mkdir -p "$1" "$2/_github_workflow" "$3" && cat > "$2/_github_workflow/event.json"'
        )
        payload = json.dumps(state.contexts["github"]["event"]).encode()
        res = await state.guest.execute(
            ["sh", "-c", script, "sh", state.workspace, layout.temp, layout.tool_cache],
            ExecOptions(stdin=payload),
        )
        if not res.ok:
            raise UserInputError(
                f"cannot prepare the job's directories: {res.stderr.decode(errors='replace')}"
            )


def _mask_step(masker: Masker, step: StepEntry) -> StepEntry:
    """``step`` with its command masked by every mask of its job: the command is the
    script as written, which can hold a value the step itself masks later. Its output was
    masked line by line as it ran (by the masks known then) and is left as it is."""
    return dataclasses.replace(step, command=masker.mask_text(step.command))
