"""The corpus count: which of the real workflows in tests/data/corpus ``vmrunner run``
could run offline, given the repositories of the actions they use, and why not.

Prints figures; asserts nothing. Usage::

    .venv/bin/python bench/corpus_runnable.py [--workflows] [--actions N]

Every workflow listed in ``tests/data/corpus/SOURCES`` is planned as ``vmrunner run
--list`` plans it (``services.planning.plan_run`` over every event, with job instances:
matrix, ``runs-on`` label to image) and checked as ``vmrunner check`` checks it
(``services.checks.check_paths``, with the remote actions resolved from vmrunner's action
cache by ``services.action_lookup.ActionLookup``, read-only: nothing is fetched). Only the
jobs that would run (a Linux ``runs-on``; the others are skipped by ``vmrunner run``) count.
A workflow is:

* ``runnable``: nothing stands in its way (run steps, ``actions/checkout``, actions whose
  ``action.yml`` in the cache says node or composite, local reusable workflows);
* ``runnable if its actions are node or composite``: it uses remote actions not in the
  cache (whose kind cannot be known offline) or local actions (``./path``: they are in the
  repository, which the corpus does not hold), and nothing else stands in its way;
* ``not runnable``, with its causes: no job whose ``runs-on`` maps to an image (non-Linux,
  or a Linux label vmrunner does not map by default: skipped), ``container:`` or
  ``services:``, ``docker://`` steps, a Docker action (known from the cache), a call of a
  reusable workflow in another repository, or something ``check`` rejects (errors).

Then the distinct remote actions (``owner/repo[/path]``) with their use counts and refs,
with ``runs.using`` for those in the cache.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from vmrunner.runner.context import EventSpec, GitInfo
from vmrunner.services.action_lookup import ActionLookup
from vmrunner.services.checks import check_paths
from vmrunner.services.planning import Plan, load_file, plan_run, request_event
from vmrunner.services.runrequest import RunRequest
from vmrunner.workflow.action_check import is_checked
from vmrunner.workflow.model import Job, Workflow

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "corpus"
RUNNABLE, IF_ACTIONS, NOT = "runnable", "runnable if its actions are node or composite", "not"


@dataclass
class Verdict:
    """One workflow: its verdict, causes, and the actions its running jobs use."""

    file: str
    causes: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    local: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # remote actions not in the cache
    skipped_jobs: int = 0

    @property
    def kind(self) -> str:
        if self.causes:
            return NOT
        return IF_ACTIONS if self.unknown or self.local else RUNNABLE


def corpus() -> list[tuple[Path, Path, str]]:
    """(workflow file, its repository's root in the corpus, owner/repo) per SOURCES line."""
    found = []
    for line in (CORPUS / "SOURCES").read_text().splitlines():
        cols = line.split("\t")
        if line.startswith("#") or len(cols) < 2 or not cols[0].startswith("repos/"):
            continue
        root = CORPUS / "repos" / cols[0].split("/")[1]
        found.append((CORPUS / cols[0], root, cols[1]))
    return found


def running_jobs(plan: Plan) -> tuple[set[str], list[str]]:
    """The ids of the jobs that would run (an instance that is not skipped: it has an
    image or calls a workflow; or the matrix is known only at run time), and the
    ``runs-on`` labels of the jobs skipped because their label maps to no image."""
    ran, skipped = set(), []
    for job in plan.jobs:
        if not job.instances or any(i.skip is None for i in job.instances):
            ran.add(job.id)
        elif all((i.skip or "").startswith("skipped: runs-on") for i in job.instances):
            skipped.append(job.instances[0].runs_on)
    return ran, skipped


def platform_cause(labels: list[str]) -> str:
    """Why no job of a workflow would run, from the labels of its skipped jobs."""
    other = [x for x in labels if not re.search(r"windows|macos|mac-|darwin", x, re.I)]
    if not other:
        return "only non-Linux runs-on (skipped)"
    return f"only runs-on labels vmrunner maps to no image (skipped; -P LABEL=IMAGE): {other[0]}"


def job_causes(job: Job, verdict: Verdict, lookup: ActionLookup) -> None:
    """What stands in the way in one job that would run; its actions, sorted."""
    if job.container is not None:
        verdict.causes.append("container:")
    if job.services is not None:
        verdict.causes.append("services:")
    if job.uses is not None and not job.uses.text.startswith("./"):
        verdict.causes.append("calls a reusable workflow of another repository")
    for step in job.steps:
        uses = step.uses.text.strip() if step.uses is not None else ""
        if uses.startswith("docker://"):
            verdict.causes.append("docker:// step")
        elif uses.startswith(("./", "$/")):
            verdict.local.append(uses)
        elif uses and is_checked(uses):
            verdict.remote.append(uses)
            info = lookup(uses).info
            if info is None:
                verdict.unknown.append(uses)
            elif info.using == "docker":
                verdict.causes.append(f"Docker action {uses}")


def classify(
    file: Path, root: Path, repository: str, lookup: ActionLookup, payload: Path
) -> Verdict:
    """The verdict on one corpus workflow (see the module docstring). ``payload`` is a
    push event naming another commit than the (unknown) checkout's: no changed files,
    so no git repository is needed."""
    verdict = Verdict(str(file.relative_to(CORPUS / "repos")))
    git = GitInfo(root, "0" * 40, "main", repository, "vmrunner")
    req = RunRequest(root, (file,), event_path=payload)
    errors = [d for d in check_paths([file], root, lookup=lookup) if d.severity == "error"]
    verdict.causes += [f"check: {d.message.splitlines()[0][:90]}" for d in errors[:2]]
    if errors:
        return verdict
    plan = plan_run(req, git, [file], {}, every_event=True, dry_run=True)
    ran, skipped = running_jobs(plan)
    verdict.skipped_jobs = len(skipped)
    event = request_event(req, git)[1]
    workflow, _, _ = load_file(file, event, root)
    if not ran:
        verdict.causes.append(platform_cause(skipped))
    for job in _jobs(workflow, ran, root, event, depth=0):
        job_causes(job, verdict, lookup)
    verdict.causes = sorted(set(verdict.causes))
    return verdict


def _jobs(
    workflow: Workflow | None, ids: set[str] | None, root: Path, event: EventSpec, depth: int
) -> list[Job]:
    """The jobs of ``workflow`` among ``ids`` (all for None), and those of the local
    reusable workflows they call (all their jobs: their platforms are not planned)."""
    found = []
    for job in workflow.jobs if workflow is not None else ():
        if ids is not None and job.id not in ids:
            continue
        found.append(job)
        call = job.uses.text if job.uses is not None else ""
        if call.startswith(("./", "$/")) and depth < 10:
            callee = root / call[2:].split("@", 1)[0]
            inner = load_file(callee, event, root)[0] if callee.is_file() else None
            found += _jobs(inner, None, root, event, depth + 1)
    return found


def report(verdicts: list[Verdict], lookup: ActionLookup, top: int, each: bool) -> None:
    """Print the table(s) and the totals."""
    if each:
        print(f"{'verdict':<10} {'skipped jobs':>12}  workflow: causes")
        for v in verdicts:
            label = {RUNNABLE: "runnable", IF_ACTIONS: "if-actions", NOT: "not"}[v.kind]
            print(f"{label:<10} {v.skipped_jobs:>12}  {v.file}: {'; '.join(v.causes) or '-'}")
        print()
    kinds = Counter(v.kind for v in verdicts)
    print(f"workflows: {len(verdicts)}")
    for kind in (RUNNABLE, IF_ACTIONS, NOT):
        print(f"  {kind}: {kinds[kind]}")
    print(f"  runnable if every remote and local action is node or composite: "
          f"{kinds[RUNNABLE] + kinds[IF_ACTIONS]}")  # fmt: skip
    causes = Counter(f for v in verdicts for f in {_family(c) for c in v.causes})
    print("not runnable, by cause (a workflow may have several):")
    for cause, n in causes.most_common():
        print(f"  {n:4}  {cause}")
    print(f"workflows using remote actions: {sum(bool(v.remote) for v in verdicts)}; "
          f"local actions: {sum(bool(v.local) for v in verdicts)}")  # fmt: skip
    _actions_table(verdicts, lookup, top)


def _family(cause: str) -> str:
    if cause.startswith("check: Called workflow"):
        return "check: it calls a local reusable workflow that the corpus lacks"
    if cause.startswith("check:"):
        return "check rejects it (other errors)"
    if cause.startswith("only runs-on labels"):
        return cause.partition(": ")[0]
    return "a Docker action (known from the cache)" if cause.startswith("Docker action") else cause


def _actions_table(verdicts: list[Verdict], lookup: ActionLookup, top: int) -> None:
    uses_count: Counter[str] = Counter()
    refs: defaultdict[str, set[str]] = defaultdict(set)
    kinds: dict[str, str] = {}
    for uses in (u for v in verdicts for u in v.remote):
        name, _, ref = uses.partition("@")
        uses_count[name] += 1
        refs[name].add(ref)
        info = lookup(uses).info
        if info is not None:
            kinds[name] = info.using
    print(f"distinct remote actions: {len(uses_count)} ({sum(uses_count.values())} uses); "
          f"in the action cache: {len(kinds)}")  # fmt: skip
    print(f"{'uses':>5}  {'refs':>4}  {'runs.using':<10}  action")
    for name, n in uses_count.most_common(top):
        print(f"{n:>5}  {len(refs[name]):>4}  {kinds.get(name, '?'):<10}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", action="store_true", help="print one line per workflow")
    parser.add_argument("--actions", type=int, default=40, help="how many actions to list")
    args = parser.parse_args()
    lookup = ActionLookup()
    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp) / "push.json"
        payload.write_text(json.dumps({"after": "f" * 40}))
        verdicts = [classify(f, root, repo, lookup, payload) for f, root, repo in corpus()]
    report(verdicts, lookup, args.actions, args.workflows)


if __name__ == "__main__":
    main()
