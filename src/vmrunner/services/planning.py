"""Planning a ``vmrunner run`` without a VM: which workflows an event triggers, their
jobs with stage (depth in the ``needs`` graph), matrix size and, for a dry run, each job
instance with its expressions evaluated (name, ``if:``, ``runs-on`` and its image, step
names) as if every job it needs succeeded with no outputs.

What ``run -l``, ``run -g`` and ``run -n`` show (:mod:`vmrunner.services.planview`
renders it), and the checks ``run`` makes before it keeps a run (unknown ``-j`` job).
Reads the workflow files and asks git; starts nothing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmrunner.errors import ConfigError, UserInputError
from vmrunner.repopath import repo_resolver
from vmrunner.results import ErrorEntry
from vmrunner.runner.context import (
    EventSpec,
    GitInfo,
    RunInfo,
    git_info,
    github_context,
    make_event,
)
from vmrunner.runner.context import runner_context as runner_ctx
from vmrunner.runner.engine import NoImageError, image_for, matrix_selected
from vmrunner.runner.values import env_value, node_value, text_value
from vmrunner.services.checks import workflow_files
from vmrunner.services.runrequest import RunRequest
from vmrunner.workflow.check import WorkflowError, file_resolver, load_workflow
from vmrunner.workflow.expressions import to_string
from vmrunner.workflow.masking import Masker
from vmrunner.workflow.matrix import expand_matrix, job_display_name, strategy_context
from vmrunner.workflow.model import Job, Step, Workflow
from vmrunner.workflow.plan import JobGraph, NeedsStatus, job_should_run
from vmrunner.workflow.schema import to_data
from vmrunner.workflow.triggers import triggered


def load_file(
    file: Path, event: EventSpec, root: Path | None = None
) -> tuple[Workflow | None, str | None, list[ErrorEntry]]:
    """The workflow in ``file`` and whether ``event`` triggers it (None) or why not. With
    ``root`` (the repository), called workflows outside it are never read."""
    resolver = file_resolver(file) if root is None else repo_resolver(file, root)
    try:
        workflow = load_workflow(file.read_text("utf-8"), str(file), resolver=resolver)
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


def read_payload(path: Path | None) -> Mapping[str, Any] | None:
    """The ``--eventpath`` JSON object; raises ``ConfigError`` naming the file."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--eventpath {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--eventpath {path}: the payload must be a JSON object")
    return data


def request_event(req: RunRequest, git: GitInfo) -> tuple[GitInfo, EventSpec]:
    """The repository facts (``-a`` as the actor) and the event of ``req``; with
    ``--defaultbranch``, ``repository.default_branch`` of the payload unless it has one."""
    if req.actor:
        git = dataclasses.replace(git, actor=req.actor)
    event = make_event(git, req.event, read_payload(req.event_path), dict(req.inputs))
    if req.default_branch:
        payload = dict(event.payload)
        repo = dict(payload.get("repository") or {})
        repo.setdefault("default_branch", req.default_branch)
        payload["repository"] = repo
        event = dataclasses.replace(event, payload=payload)
    return git, event


def platform_map(label_images: Mapping[str, str], req: RunRequest) -> dict[str, str]:
    """``runs-on`` label to image: the config file's ``label_images``, then ``-P``."""
    return {**label_images, **dict(req.platforms)}


def matrix_filter(req: RunRequest) -> dict[str, frozenset[str]]:
    """``--matrix K:V`` flags as act reads them: the values given for each key."""
    keys = dict.fromkeys(k for k, _ in req.matrix)
    return {k: frozenset(v for key, v in req.matrix if key == k) for k in keys}


def relative(file: Path, root: Path) -> str:
    try:
        return str(file.resolve().relative_to(root))
    except ValueError:
        return str(file)


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


@dataclass(frozen=True)
class PlannedInstance:
    """One job instance of a dry run: ``skip`` says why it would not run, else None."""

    name: str
    matrix: Mapping[str, Any]
    runs_on: str
    image: str | None
    skip: str | None
    steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlannedJob:
    """One job of a triggered (or, listing every event, any) workflow. ``matrix_size`` is
    None when the matrix is only known at run time (``note`` says why)."""

    workflow: str
    workflow_name: str
    events: tuple[str, ...]
    id: str
    name: str
    stage: int
    needs: tuple[str, ...]
    matrix_size: int | None
    note: str = ""
    instances: tuple[PlannedInstance, ...] = ()


@dataclass
class Plan:
    """What a run would do: its jobs in workflow and ``needs`` order."""

    event: str
    jobs: list[PlannedJob] = field(default_factory=list)
    not_triggered: list[tuple[str, str]] = field(default_factory=list)
    errors: list[ErrorEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event, "jobs": [dataclasses.asdict(j) for j in self.jobs],
            "not_triggered": [{"workflow": f, "reason": r} for f, r in self.not_triggered],
            "errors": [e.to_dict() for e in self.errors],
        }  # fmt: skip


def _graph(workflow: Workflow) -> JobGraph:
    return JobGraph.from_needs({j.id: [n.text for n in j.needs] for j in workflow.jobs})


def selected_jobs(workflow: Workflow, wanted: Sequence[str]) -> list[Job]:
    """The jobs ``-j`` selects in ``workflow`` with every job they need (all for none)."""
    if not wanted:
        return list(workflow.jobs)
    graph = _graph(workflow)
    keep = {j for j in wanted if j in graph.jobs}
    for job in list(keep):
        keep |= graph.ancestors(job)
    return [j for j in workflow.jobs if j.id in keep]


def stages(graph: JobGraph) -> dict[str, int]:
    """Each job's stage: 0 without needs, else one more than the deepest job it needs."""
    stage: dict[str, int] = {}
    for job in graph.topological_order():
        stage[job] = 1 + max((stage[d] for d in graph.needs[job]), default=-1)
    return stage


def plan_run(
    req: RunRequest, git: GitInfo, files: Sequence[Path], label_images: Mapping[str, str],
    *, every_event: bool = False, dry_run: bool = False,
) -> Plan:  # fmt: skip
    """The plan of ``req`` over workflow ``files``: the jobs its event triggers (every
    workflow's jobs with ``every_event``), with job instances when ``dry_run``. Raises
    ``ConfigError`` when a ``-j`` job is in none of those workflows."""
    git, event = request_event(req, git)
    plan = Plan("*" if every_event else event.name)
    labels = platform_map(label_images, req)
    seen: dict[str, str] = {}
    for file in files:
        workflow, reason, errors = load_file(file, event, git.root)
        rel = relative(file, git.root)
        plan.errors += errors
        for job in workflow.jobs if workflow is not None else ():
            seen.setdefault(job.id, "" if reason is None or every_event else f"{rel}: {reason}")
        if workflow is None or (reason is not None and not every_event):
            plan.not_triggered += [(rel, reason)] if reason is not None else []
            continue
        info = RunInfo("0", 0, _workflow_name(workflow, rel), rel, git, event)
        planner = _WorkflowPlanner(workflow, rel, info, req, labels, dry_run)
        plan.jobs += planner.jobs()
    _check_jobs(req.jobs, plan, seen)
    return plan


def _check_jobs(wanted: Sequence[str], plan: Plan, seen: Mapping[str, str]) -> None:
    planned = {j.id for j in plan.jobs}
    for job in wanted:
        if job in planned:
            continue
        if job in seen:
            raise ConfigError(
                f"-j {job}: '{plan.event}' triggers no workflow with the job ({seen[job]})"
            )
        known = ", ".join(sorted(seen)) or "none"
        raise ConfigError(
            f"-j {job}: no such job (jobs: {known}); list them with 'vmrunner run -l'"
        )


def _workflow_name(workflow: Workflow, rel: str) -> str:
    return to_string(getattr(workflow.name, "value", None) or rel)


class _WorkflowPlanner:
    """The planned jobs of one workflow."""

    def __init__(
        self, workflow: Workflow, rel: str, info: RunInfo, req: RunRequest,
        labels: Mapping[str, str], dry_run: bool,
    ) -> None:  # fmt: skip
        self.workflow, self.rel, self.info, self.req = workflow, rel, info, req
        self.labels, self.dry_run = labels, dry_run
        self.events = tuple(e.name for e in workflow.on.events)
        self.results: dict[str, str] = {}  # what each planned job would end as (dry run)
        self.masker = Masker(v for _, v in req.secrets)

    def jobs(self) -> list[PlannedJob]:
        chosen = selected_jobs(self.workflow, self.req.jobs)
        graph = JobGraph.from_needs({j.id: [n.text for n in j.needs] for j in chosen})
        stage = stages(graph)
        by_id = {j.id: j for j in chosen}
        return [self._job(by_id[j], stage[j], graph) for j in graph.topological_order()]

    def _context(self, job: Job) -> dict[str, Any]:
        ctx: dict[str, Any] = {
            "github": github_context(self.info, job.id), "vars": dict(self.req.vars),
            "secrets": {**dict(self.req.secrets), "GITHUB_TOKEN": ""},
            "inputs": dispatch_inputs(self.workflow, self.info.event),
            "needs": {n.text: {"result": "success", "outputs": {}} for n in job.needs},
            "matrix": {}, "strategy": {}, "runner": runner_ctx(self.info.layout),
            "job": {"status": "success"}, "steps": {}, "env": {},
        }  # fmt: skip
        ctx["env"] = {**env_value(self.workflow.env, ctx), **dict(self.req.env)}
        return ctx

    def _job(self, job: Job, stage: int, graph: JobGraph) -> PlannedJob:
        planned = self._plan_job(job, stage, graph)
        ran = [i for i in planned.instances if i.skip is None]
        self.results[job.id] = "success" if ran or planned.matrix_size is None else "skipped"
        return planned

    def _plan_job(self, job: Job, stage: int, graph: JobGraph) -> PlannedJob:
        base = PlannedJob(
            self.rel, self.info.workflow_name, self.events, job.id, job.display_name, stage,
            graph.needs[job.id], None,
        )  # fmt: skip
        ctx = self._context(job)
        try:
            combos = self._combos(job, ctx)
        except UserInputError as exc:
            return dataclasses.replace(base, note=f"matrix known at run time: {exc}")
        base = dataclasses.replace(base, matrix_size=len(combos))
        if job.uses is not None:
            base = dataclasses.replace(base, note=f"calls {job.uses.text}")
        if not self.dry_run:
            return base
        try:
            status = NeedsStatus.of(self.results.get(a, "success") for a in graph.ancestors(job.id))
            runs = job_should_run(_if_source(job.if_), ctx, status)
        except UserInputError as exc:
            return dataclasses.replace(base, note=f"if: {exc}")
        if not runs:
            return dataclasses.replace(
                base, note="skipped: its if: is false (or a job it needs would not run)"
            )
        instances = tuple(self._instance(job, ctx, c, i, len(combos)) for i, c in enumerate(combos))
        return dataclasses.replace(base, instances=instances)

    def _combos(self, job: Job, ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
        combos = expand_matrix(node_value(job.strategy.matrix, ctx) if job.strategy else None)
        return [c for c in combos if matrix_selected(c, matrix_filter(self.req))]

    def _instance(
        self, job: Job, base: Mapping[str, Any], combo: dict[str, Any], index: int, total: int
    ) -> PlannedInstance:
        """One job instance, secrets masked in what it shows."""
        inst = self._raw_instance(job, base, combo, index, total)
        mask = self.masker.mask_text
        return dataclasses.replace(
            inst, name=mask(inst.name), steps=tuple(mask(s) for s in inst.steps),
            skip=mask(inst.skip) if inst.skip else None,
        )  # fmt: skip

    def _raw_instance(
        self, job: Job, base: Mapping[str, Any], combo: dict[str, Any], index: int, total: int
    ) -> PlannedInstance:
        ctx = {**base, "matrix": combo,
               "strategy": strategy_context(index, total, True, total).to_context()}  # fmt: skip
        try:
            name = (
                text_value(job.name, ctx)
                if job.name is not None
                else job_display_name(job.id, combo)
            )
            runs_on = node_value(job.runs_on, ctx)
            ctx["env"] = {**ctx["env"], **env_value(job.env, ctx), **dict(self.req.env)}
        except UserInputError as exc:
            return PlannedInstance(job.display_name, combo, "", None, f"error: {exc}")
        label = _label_text(runs_on)
        if job.uses is not None:
            return PlannedInstance(name, combo, label, None, None, (f"calls {job.uses.text}",))
        try:
            image = image_for(runs_on, self.labels)
        except NoImageError as exc:
            return PlannedInstance(name, combo, label, None, f"skipped: {exc}")
        except UserInputError as exc:
            return PlannedInstance(name, combo, label, None, f"error: {exc}")
        return PlannedInstance(
            name, combo, label, image, None, tuple(_step_name(s, ctx) for s in job.steps)
        )


def _if_source(node: Any) -> str | None:
    return None if node is None else to_string(getattr(node, "value", ""))


def _label_text(runs_on: Any) -> str:
    if isinstance(runs_on, Mapping):
        runs_on = runs_on.get("labels") or []
    if isinstance(runs_on, str):
        return runs_on
    return ",".join(to_string(x) for x in runs_on or [])


def _step_name(step: Step, ctx: Mapping[str, Any]) -> str:
    """A step's name as the log shows it (``Run <first line>`` for an unnamed ``run``)."""
    try:
        name = text_value(step.name, ctx)
    except UserInputError:
        name = ""
    if name:
        return name
    if step.uses is not None:
        return f"Run {step.uses.text}"
    lines = to_string(getattr(step.run, "value", "") or "").strip().splitlines()
    return f"Run {lines[0]}" if lines else f"step {step.index + 1}"


def plan_request(
    req: RunRequest, label_images: Mapping[str, str], *, every_event: bool = False,
    dry_run: bool = False,
) -> Plan:  # fmt: skip
    """:func:`plan_run` over the workflows of ``req`` in its repository. Raises
    ``ConfigError`` outside a git repository, for a missing ``-W`` path or bad flags."""
    git = git_info(req.workdir)
    files = workflow_files(req.workflows, git.root)
    return plan_run(req, git, files, label_images, every_event=every_event, dry_run=dry_run)
