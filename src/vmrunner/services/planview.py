"""A :class:`~vmrunner.services.planning.Plan` as plain text: ``run -l`` (a table, as
act's), ``run -g`` (the ``needs`` graph by stage) and ``run -n`` (the dry run).

Pure code: lines of text, no colour, no markup; the caller prints them verbatim.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from vmrunner.services.planning import Plan, PlannedJob


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _matrix(job: PlannedJob) -> str:
    return "?" if job.matrix_size is None else str(job.matrix_size)


def render_list(plan: Plan) -> list[str]:
    """act's ``--list``: one row per job, with its stage and matrix size."""
    head = ("STAGE", "JOB ID", "JOB NAME", "MATRIX", "WORKFLOW NAME", "WORKFLOW FILE", "EVENTS")
    rows = [head] + [
        (str(j.stage), j.id, j.name, _matrix(j), j.workflow_name, j.workflow, ",".join(j.events))
        for j in plan.jobs
    ]
    return [*_table(rows), *_footer(plan)]


def _by_workflow(plan: Plan) -> Iterator[tuple[str, list[PlannedJob]]]:
    files = list(dict.fromkeys(j.workflow for j in plan.jobs))
    for file in files:
        yield file, [j for j in plan.jobs if j.workflow == file]


def render_graph(plan: Plan) -> list[str]:
    """The ``needs`` graph of each workflow, stage by stage: ``job <- needs``."""
    lines: list[str] = []
    for file, jobs in _by_workflow(plan):
        lines.append(f"{file} ({jobs[0].workflow_name})")
        for stage in sorted({j.stage for j in jobs}):
            lines.append(f"  stage {stage}")
            for job in (j for j in jobs if j.stage == stage):
                needs = f" <- {', '.join(job.needs)}" if job.needs else ""
                lines.append(f"    {job.id}{needs}")
    return [*lines, *_footer(plan)]


def render_dryrun(plan: Plan) -> list[str]:
    """The dry run: each job instance with its name, ``runs-on`` and image, and its
    steps; or why it would not run."""
    lines = [f"dry run of '{plan.event}': no VM is started"]
    for file, jobs in _by_workflow(plan):
        lines.append(f"{file} ({jobs[0].workflow_name})")
        for job in jobs:
            needs = f", needs {', '.join(job.needs)}" if job.needs else ""
            head = f"  {job.id} [stage {job.stage}{needs}]"
            lines.append(f"{head}: {job.note}" if job.note and not job.instances else head)
            for inst in job.instances:
                matrix = f" {json.dumps(dict(inst.matrix))}" if inst.matrix else ""
                where = f"{inst.runs_on} -> {inst.image}" if inst.image else inst.runs_on
                lines.append(
                    f"    {inst.name}{matrix} on {where}" + (f": {inst.skip}" if inst.skip else "")
                )
                lines += [f"      - {step}" for step in inst.steps]
    return [*lines, *_footer(plan)]


def _footer(plan: Plan) -> list[str]:
    lines = [f"not triggered: {f}: {r}" for f, r in plan.not_triggered]
    for e in plan.errors:
        where = ":".join(str(x) for x in (e.file, e.line, e.col) if x is not None)
        lines.append(f"{where}: {e.message}" if where else e.message)
    if not plan.jobs and not plan.errors:
        lines.append(f"no job: no workflow is triggered by '{plan.event}'")
    return lines
