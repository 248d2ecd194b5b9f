"""A kept webhook delivery as the workflow runs it starts: :func:`plan_delivery`.

The repository is fetched at the event's commit (:class:`~vmrunner.github.repos.RepoCache`),
its workflow files are read at that commit and decided on exactly as ``vmrunner run``
decides (:func:`vmrunner.services.planning.load_file` over an
:func:`~vmrunner.runner.context.make_event` event: the same loader, the same ``on:``
filters), with the changed files GitHub would use for ``paths``:

* ``push``: ``before..after``; a new branch (``before`` all zeros): from the parent of the
  oldest pushed commit (``commits[0]``, else of ``after``); a deleted ref starts nothing.
* ``pull_request`` (opened, synchronize, reopened; other actions start nothing): the head
  commit's workflows, files changed since the merge base with the base commit.
* ``workflow_dispatch``: ``ref`` fetched, only the ``workflow`` named, ``inputs`` given.
* ``check_suite`` requested/rerequested: the ``push`` of ``head_branch`` at ``head_sha``.
* ``check_run`` rerequested: only the workflow of its ``external_id``
  (``<workflow path>#<job id>``), as a ``push`` of the suite's head branch, else as the
  ``pull_request`` it lists, whichever triggers it.

Changed files that cannot be known (a force-pushed-away ``before``) let ``paths`` pass.
Starts nothing, keeps nothing; reads and fetches git only.
"""

from __future__ import annotations

import dataclasses
import secrets
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmrunner.errors import UserInputError
from vmrunner.github.repos import ZERO_SHA, RepoCache, split_repo
from vmrunner.results import ErrorEntry
from vmrunner.runner.context import EventSpec, GitInfo, RunInfo, github_context, make_event
from vmrunner.runner.values import flag_value, text_value
from vmrunner.services.planning import dispatch_inputs, load_file
from vmrunner.workflow.expressions import to_string
from vmrunner.workflow.model import Workflow
from vmrunner.workflow.triggers import split_ref

PR_ACTIONS = ("opened", "synchronize", "reopened")
SUITE_ACTIONS = ("requested", "rerequested")


@dataclass(frozen=True)
class WorkUnit:
    """One triggered workflow: what the queue holds and a worker runs."""

    workflow: str  # path in the repository, ".github/workflows/ci.yml"
    workflow_name: str  # the workflow's `name:` or its path
    jobs: tuple[tuple[str, str], ...]  # (job id, job name) as written (matrix not expanded)
    group: str  # the evaluated `concurrency:` group, else "<repo>/<branch or ref>/<path>"
    cancel_in_progress: bool


@dataclass(frozen=True)
class LoadError:
    """A workflow file that cannot run (bad YAML, schema error, bad concurrency group)."""

    workflow: str
    line: int | None
    message: str


@dataclass(frozen=True)
class DeliveryPlan:
    """What a delivery starts. ``ignored`` says why it starts nothing (None otherwise);
    ``payload`` is what the runs' ``github.event`` gets."""

    event: str
    repo: str
    sha: str
    ref: str
    branch: str | None
    payload: Mapping[str, Any]
    units: tuple[WorkUnit, ...]
    errors: tuple[LoadError, ...]
    not_triggered: tuple[tuple[str, str], ...]
    ignored: str | None


class _Payload:
    """A webhook payload read by key path; missing required fields are a
    ``UserInputError`` naming the event and the field."""

    def __init__(self, event: str, data: Mapping[str, Any]) -> None:
        self.event, self.data = event, data

    def value(self, *keys: str) -> Any:
        found: Any = self.data
        for key in keys:
            found = found.get(key) if isinstance(found, Mapping) else None
        return found

    def text(self, *keys: str) -> str:
        found = self.value(*keys)
        return found if isinstance(found, str) else ""

    def need(self, *keys: str) -> str:
        found = self.text(*keys)
        if not found:
            raise UserInputError(f"the {self.event} payload has no '{'.'.join(keys)}'")
        return found


@dataclass(frozen=True)
class _Target:
    """The event as the runs see it: name, commit, payload, changed files (None:
    unknown) and, for a re-run or a dispatch, the one workflow it is about."""

    event: str
    sha: str
    branch: str | None
    payload: Mapping[str, Any]
    changed: tuple[str, ...] | None
    only: str | None = None


def plan_delivery(
    event: str, payload: Mapping[str, Any], repos: RepoCache, vars: Mapping[str, str] = {}
) -> DeliveryPlan:
    """The workflows ``event`` with ``payload`` triggers at its commit, each a
    :class:`WorkUnit`; invalid workflow files are :class:`LoadError` (the others still
    plan). ``vars`` is the ``vars`` context of concurrency groups. Raises
    ``UserInputError`` for a payload without what the event needs (naming the field), an
    unknown repository or ref; ``FetchError`` when the git server cannot be reached."""
    data = _Payload(event, payload)
    repo = data.need("repository", "full_name")
    split_repo(repo)
    handler = _HANDLERS.get(event)
    found = handler(data, repo, repos) if handler else f"event '{event}' starts no workflow"
    if isinstance(found, str):
        ref = data.text("ref")
        return DeliveryPlan(event, repo, "", ref, None, payload, (), (), (), found)
    plans = [_plan(target, repo, repos, vars) for target in found]
    return next((p for p in plans if p.units or p.errors), plans[0])


Handler = Callable[[_Payload, str, RepoCache], "list[_Target] | str"]


def _push(data: _Payload, repo: str, repos: RepoCache) -> list[_Target] | str:
    ref, after = data.need("ref"), data.need("after")
    before = data.text("before") or ZERO_SHA
    if data.value("deleted") is True or set(after) == {"0"}:
        kind, name = split_ref(ref)
        return f"push deleting {kind or 'ref'} {name}"
    sha = repos.fetch(repo, after)
    changed = _push_changes(repos, repo, before, sha, data.value("commits"))
    return [_Target("push", sha, _branch(ref), data.data, changed)]


def _push_changes(
    repos: RepoCache, repo: str, before: str, sha: str, commits: Any
) -> tuple[str, ...] | None:
    """What GitHub diffs for ``paths`` on a push: ``before..sha``, or for a new branch
    from the parent of the oldest pushed commit; None when ``before`` is gone."""
    if set(before) != {"0"}:
        try:
            repos.fetch(repo, before)
        except UserInputError:
            return None  # force-pushed away: unknown, so paths filters pass
        return repos.changed_files(repo, before, sha)
    first = sha
    if isinstance(commits, Sequence) and commits and isinstance(commits[0], Mapping):
        first = str(commits[0].get("id") or sha)
    if first != sha and not repos.has_commit(repo, first):
        first = sha  # a commit list that is not this push's history
    return repos.changed_files(repo, repos.parent(repo, first) or ZERO_SHA, sha)


def _pull_request(data: _Payload, repo: str, repos: RepoCache) -> list[_Target] | str:
    action = data.text("action")
    if action not in PR_ACTIONS:
        return f"pull_request action '{action}' is not run"
    head, base = data.need("pull_request", "head", "sha"), data.need("pull_request", "base", "sha")
    data.need("pull_request", "base", "ref")
    sha = repos.fetch(repo, head)
    changed: tuple[str, ...] | None
    try:
        repos.fetch(repo, base)
        changed = repos.changed_files(repo, base, sha, merge_base=True)
    except UserInputError:
        changed = None  # no base commit or no merge base: unknown, paths filters pass
    branch = data.text("pull_request", "head", "ref") or None
    return [_Target("pull_request", sha, branch, data.data, changed)]


def _workflow_dispatch(data: _Payload, repo: str, repos: RepoCache) -> list[_Target] | str:
    ref, workflow = data.need("ref"), data.need("workflow")
    sha = repos.fetch(repo, ref)
    return [_Target("workflow_dispatch", sha, _branch(ref), data.data, None, workflow)]


def _check_suite(data: _Payload, repo: str, repos: RepoCache) -> list[_Target] | str:
    action = data.text("action")
    if action not in SUITE_ACTIONS:
        return f"check_suite action '{action}' is not run"
    head = data.need("check_suite", "head_sha")
    branch = data.text("check_suite", "head_branch")
    if not branch:
        return f"check_suite of {head} has no head branch: no push to run again"
    return _push(_as_push(data, branch, head, data.text("check_suite", "before")), repo, repos)


def _check_run(data: _Payload, repo: str, repos: RepoCache) -> list[_Target] | str:
    action = data.text("action")
    if action != "rerequested":
        return f"check_run action '{action}' is not run"
    external = data.text("check_run", "external_id")
    path, sep, _ = external.rpartition("#")
    if not (sep and path):
        name = data.text("check_run", "name")
        return f"check run '{name}' is not vmrunner's (external_id {external!r})"
    head = data.need("check_run", "head_sha")
    targets: list[_Target] = []
    branch = data.text("check_run", "check_suite", "head_branch")
    if branch:
        before = data.text("check_run", "check_suite", "before")
        found = _push(_as_push(data, branch, head, before), repo, repos)
        targets += found if isinstance(found, list) else []
    pulls = data.value("check_run", "pull_requests")
    if isinstance(pulls, Sequence) and pulls and isinstance(pulls[0], Mapping):
        found = _pull_request(_as_pull(data, pulls[0], head), repo, repos)
        targets += found if isinstance(found, list) else []
    if not targets:
        return f"check run of {head} has neither a head branch nor a pull request"
    return [dataclasses.replace(t, only=path) for t in targets]


def _as_push(data: _Payload, branch: str, head: str, before: str) -> _Payload:
    """The ``push`` payload a check suite re-runs."""
    push = {"ref": f"refs/heads/{branch}", "before": before or ZERO_SHA, "after": head,
            "created": False, "deleted": False, "forced": False, "commits": [],
            "repository": data.value("repository"), "sender": data.value("sender")}  # fmt: skip
    return _Payload("push", push)


def _as_pull(data: _Payload, pull: Mapping[str, Any], head: str) -> _Payload:
    """The ``pull_request`` (synchronize) payload a check run of that pull re-runs."""
    number = pull.get("number")
    request = {"number": number, "head": {**dict(pull.get("head") or {}), "sha": head},
               "base": dict(pull.get("base") or {})}  # fmt: skip
    pr = {"action": "synchronize", "number": number, "pull_request": request,
          "repository": data.value("repository"), "sender": data.value("sender")}  # fmt: skip
    return _Payload("pull_request", pr)


_HANDLERS: Mapping[str, Handler] = {
    "push": _push, "pull_request": _pull_request, "workflow_dispatch": _workflow_dispatch,
    "check_suite": _check_suite, "check_run": _check_run,
}  # fmt: skip


def _branch(ref: str) -> str | None:
    kind, name = split_ref(ref)
    return name if kind == "branch" else None


def _plan(target: _Target, repo: str, repos: RepoCache, vars: Mapping[str, str]) -> DeliveryPlan:
    """Read the workflows at the target's commit and decide on each."""
    actor = _Payload(target.event, target.payload).text("sender", "login") or "vmrunner"
    git = GitInfo(repos.mirror(repo), target.sha, target.branch, repo, actor)
    event = make_event(git, target.event, target.payload, {})
    event = dataclasses.replace(event, changed=target.changed)
    paths = repos.workflow_paths(repo, target.sha)
    chosen = [p for p in paths if target.only in (None, p)]
    missing = [] if target.only in (None, *paths) else [(str(target.only), "no such workflow")]
    planner = _Planner(git, event, vars, _scope(event, target))
    with tempfile.TemporaryDirectory(prefix="vmrunner-dispatch-") as tmp:
        root = Path(tmp)
        for path in paths:  # all of them: a called workflow is read from disk
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(repos.read_file(repo, target.sha, path))
        for path in chosen:
            planner.decide(root, path)
    return DeliveryPlan(
        target.event, repo, target.sha, event.ref, target.branch, event.payload,
        tuple(planner.units), tuple(planner.errors), tuple(missing + planner.skipped), None,
    )  # fmt: skip


def _scope(event: EventSpec, target: _Target) -> str:
    """The default group's middle: the branch, or the ref (a pull request's is
    ``refs/pull/N/merge``: head branch names are not unique across forks)."""
    if event.name == "pull_request" or target.branch is None:
        return event.ref
    return target.branch


class _Planner:
    """Decides on workflow files one at a time, collecting units, errors and skips."""

    def __init__(self, git: GitInfo, event: EventSpec, vars: Mapping[str, str], scope: str) -> None:
        self.git, self.event, self.vars, self.scope = git, event, vars, scope
        self.units: list[WorkUnit] = []
        self.errors: list[LoadError] = []
        self.skipped: list[tuple[str, str]] = []

    def decide(self, root: Path, path: str) -> None:
        workflow, reason, errors = load_file(root / path, self.event, root)
        self.errors += [_load_error(e, root, path) for e in errors]
        if workflow is None:
            return
        if reason is not None:
            self.skipped.append((path, reason))
            return
        try:
            self.units.append(self._unit(workflow, path))
        except UserInputError as exc:
            conc = workflow.concurrency
            node = conc.group if conc and conc.group is not None else conc
            line = node.pos.line if node is not None else None
            self.errors.append(LoadError(path, line, f"concurrency: {exc}"))

    def _unit(self, workflow: Workflow, path: str) -> WorkUnit:
        name = to_string(getattr(workflow.name, "value", None) or path)
        jobs = tuple((job.id, job.display_name) for job in workflow.jobs)
        default = f"{self.git.repository}/{self.scope}/{path}"
        conc = workflow.concurrency
        if conc is None or conc.group is None:
            return WorkUnit(path, name, jobs, default, False)
        run_id = str(10**11 + secrets.randbelow(9 * 10**11))  # each run its own github.run_id
        run = RunInfo(run_id, 0, name, path, self.git, self.event)
        ctx = {"github": github_context(run, ""), "vars": dict(self.vars),
               "inputs": dispatch_inputs(workflow, self.event)}  # fmt: skip
        group = text_value(conc.group, ctx) or default
        return WorkUnit(path, name, jobs, group, flag_value(conc.cancel_in_progress, ctx))


def _load_error(entry: ErrorEntry, root: Path, path: str) -> LoadError:
    """``entry`` with its file relative to the repository (never the scratch directory)."""
    file = entry.file or path
    prefix = f"{root}/"
    return LoadError(file.removeprefix(prefix), entry.line, entry.message.replace(prefix, ""))
