"""What a run knows before any job starts: the repository, the event and the contexts.

:func:`git_info` asks git (through :mod:`vmrunner.procs`) about the repository in a
directory; :func:`make_event` turns an event name, an optional payload file and the
repository state into an :class:`EventSpec`; :func:`github_context` and
:func:`default_env` build the ``github`` context and the ``GITHUB_*`` variables of a job.
Only :func:`git_info`, :func:`changed_files` and :func:`export_commit` touch the host.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmrunner.errors import ConfigError, UserInputError
from vmrunner.procs import run_capture
from vmrunner.workflow.triggers import EventInfo

SERVER_URL = "https://github.com"
API_URL = "https://api.github.com"


@dataclass(frozen=True)
class GitInfo:
    """The repository a run works on. ``branch`` is None on a detached HEAD."""

    root: Path
    sha: str
    branch: str | None
    repository: str
    actor: str


def _git(root: Path, *args: str) -> str:
    status, out, err = run_capture(["git", "-C", str(root), *args], timeout=60)
    if status != 0:
        detail = err.decode("utf-8", "replace").strip()
        raise ConfigError(f"git {' '.join(args)} failed in {root}: {detail}")
    return out.decode("utf-8", "replace").strip()


def _repository(url: str, root: Path) -> str:
    found = re.search(r"github\.com[:/]+([^/]+)/([^/]+?)(?:\.git)?/?$", url)
    return f"{found[1]}/{found[2]}" if found else f"local/{root.name}"


def git_info(path: Path) -> GitInfo:
    """The repository that holds ``path``; raises ``ConfigError`` when there is none or
    it has no commit."""
    status, out, _ = run_capture(
        ["git", "-C", str(path), "rev-parse", "--show-toplevel"], timeout=30
    )
    if status != 0:
        raise ConfigError(f"{path} is not in a git repository (vmrunner run needs one)")
    root = Path(out.decode().strip())
    sha = _git(root, "rev-parse", "HEAD")
    _, branch_out, _ = run_capture(
        ["git", "-C", str(root), "symbolic-ref", "-q", "--short", "HEAD"], timeout=30
    )
    branch = branch_out.decode().strip() or None
    _, url, _ = run_capture(["git", "-C", str(root), "remote", "get-url", "origin"], timeout=30)
    _, actor, _ = run_capture(["git", "-C", str(root), "config", "user.name"], timeout=30)
    return GitInfo(
        root,
        sha,
        branch,
        _repository(url.decode().strip(), root),
        actor.decode().strip() or "vmrunner",
    )


def changed_files(root: Path, sha: str, before: str | None = None) -> tuple[str, ...]:
    """The files changed by commit ``sha`` (against ``before`` or its first parent; every
    file of a root commit)."""
    base = before or f"{sha}^"
    status, out, _ = run_capture(
        ["git", "-C", str(root), "diff", "--name-only", base, sha], timeout=60
    )
    if status != 0:
        out = _git(root, "ls-tree", "-r", "--name-only", sha).encode()
    return tuple(line for line in out.decode().splitlines() if line)


def export_commit(root: Path, ref: str, dest: Path) -> None:
    """Write the tree of commit ``ref`` into directory ``dest`` (``git archive``)."""
    status, out, err = run_capture(
        ["git", "-C", str(root), "archive", "--format=tar", ref], timeout=300
    )
    if status != 0:
        raise UserInputError(
            f"cannot export {ref} of {root}: {err.decode('utf-8', 'replace').strip()}"
        )
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        if hasattr(tarfile, "tar_filter"):  # Python 3.11.4 and later
            tar.extractall(dest, filter="tar")
        else:  # Debian 12's 3.11.2: git archive writes no absolute or '..' names
            tar.extractall(dest)


BUNDLE_REF = "refs/heads/vmrunner-checkout"
"""The one ref in a bundle written by :func:`bundle_commit`."""


def bundle_commit(root: Path, ref: str, dest: Path) -> str:
    """Write ``dest/bundle/repo.bundle``: the history of commit ``ref`` of the repository at
    ``root`` under :data:`BUNDLE_REF`; returns the commit's sha. Leaves ``root`` untouched
    (the ref lives in a scratch repository under ``dest`` borrowing ``root``'s objects).
    Raises ``UserInputError`` for an unknown ``ref``."""
    scratch = dest / "scratch.git"

    def git(*argv: str) -> str:
        status, out, err = run_capture(["git", *argv], timeout=300)
        if status != 0:
            detail = err.decode("utf-8", "replace").strip()
            raise UserInputError(f"cannot check out {ref} of {root}: {detail}")
        return out.decode("utf-8", "replace").strip()

    sha = git("-C", str(root), "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")
    common = Path(git("-C", str(root), "rev-parse", "--git-common-dir"))
    objects = (common if common.is_absolute() else root / common).resolve() / "objects"
    git("init", "-q", "--bare", str(scratch))
    (scratch / "objects" / "info" / "alternates").write_text(f"{objects}\n")
    git("-C", str(scratch), "update-ref", BUNDLE_REF, sha)
    (dest / "bundle").mkdir()
    bundle = str(dest / "bundle" / "repo.bundle")
    git("-C", str(scratch), "bundle", "create", "-q", bundle, BUNDLE_REF)
    return sha


@dataclass(frozen=True)
class EventSpec:
    """The event a run reacts to: name, payload, and the facts the ``on:`` filters and
    the ``github`` context need."""

    name: str
    sha: str
    ref: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    base_ref: str = ""
    head_ref: str = ""
    action: str | None = None
    changed: tuple[str, ...] | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)

    def info(self) -> EventInfo:
        """What :func:`vmrunner.workflow.triggers.triggered` needs."""
        pr = self.name in ("pull_request", "pull_request_target")
        return EventInfo(
            ref=self.ref, base_ref=self.base_ref or None if pr else None,
            changed_files=self.changed, action=self.action,
        )  # fmt: skip


def _dig(data: Mapping[str, Any], *keys: str) -> str:
    value: Any = data
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) else ""


BASE_EVENTS = ("pull_request_target", "workflow_run")
"""Events that run the base branch's workflow on the base branch's commit, with secrets: never
the pull request's files (GitHub's rule; running the PR's workflow with secrets is the attack)."""


def is_fork_pull_request(event: EventSpec) -> bool:
    """GitHub's rule: a ``pull_request`` whose head repository is not the base repository
    comes from a fork; its workflow gets no secrets (and no token that can write)."""
    if event.name != "pull_request":
        return False
    data = event.payload
    head = _dig(data, "pull_request", "head", "repo", "full_name")
    base = _dig(data, "pull_request", "base", "repo", "full_name") or _dig(
        data, "repository", "full_name"
    )
    return bool(head) and head != base


def base_commit(root: Path, name: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """(branch, sha) whose workflow a :data:`BASE_EVENTS` event runs: the pull request's base
    (``pull_request.base.sha``, else ``.ref``) or the default branch
    (``repository.default_branch``, else ``main``), as a local or ``origin/`` branch. Raises
    ``ConfigError`` when that commit is not in the repository at ``root``."""
    default = _dig(data, "repository", "default_branch") or "main"
    branch, sha = default, ""
    if name == "pull_request_target":
        branch = _dig(data, "pull_request", "base", "ref") or default
        sha = _dig(data, "pull_request", "base", "sha")
    for candidate in (sha, branch, f"origin/{branch}"):
        if not candidate:
            continue
        status, out, _ = run_capture(
            ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", "--end-of-options",
             f"{candidate}^{{commit}}"], timeout=30,
        )  # fmt: skip
        if status == 0:
            return branch, out.decode().strip()
    raise ConfigError(
        f"{name} runs the workflow of the base branch '{branch}', which is not in {root} "
        "(fetch it, or give the base in the event payload: --eventpath)"
    )


def base_workflow_files(root: Path, sha: str, files: list[Path], dest: Path) -> list[Path]:
    """``files`` (under ``root``) as they are in commit ``sha``, exported under ``dest``;
    a file the commit does not have is left out (the base branch has no such workflow)."""
    export_commit(root, sha, dest)
    out = []
    for file in files:
        try:
            rel = file.resolve().relative_to(root.resolve())
        except ValueError as exc:
            raise ConfigError(f"{file} is not in the repository {root}") from exc
        if (dest / rel).is_file() and not (dest / rel).is_symlink():
            out.append(dest / rel)
    return out


def group_scope(git: GitInfo) -> str:
    """What a concurrency group's name is scoped to, as on GitHub (groups are per
    repository): the repository's ``owner/name``, or for one without a GitHub remote its
    path, so that one repository can never queue behind or cancel another's runs."""
    return str(git.root) if git.repository.startswith("local/") else git.repository


def make_event(
    git: GitInfo, name: str, payload: Mapping[str, Any] | None, inputs: Mapping[str, str]
) -> EventSpec:
    """The event: ``name`` with ``payload`` (from ``--eventpath``) when given, else the
    current commit and branch of ``git``. ``inputs`` (``--input``) go over the payload's."""
    data = dict(payload or {})
    branch_ref = f"refs/heads/{git.branch}" if git.branch else ""
    ref = _dig(data, "ref") or branch_ref
    sha = _dig(data, "after") or _dig(data, "pull_request", "head", "sha") or git.sha
    base_ref = _dig(data, "pull_request", "base", "ref")
    head_ref = _dig(data, "pull_request", "head", "ref")
    if name in ("pull_request", "pull_request_target"):
        number = data.get("number") or data.get("pull_request", {}).get("number") or 1
        ref = ref if ref.startswith("refs/pull/") else f"refs/pull/{number}/merge"
        base_ref = base_ref or "main"
        head_ref = head_ref or (git.branch or "")
    if name in BASE_EVENTS:
        branch, sha = base_commit(git.root, name, data)
        ref = f"refs/heads/{branch}"
        base_ref = branch if name == "pull_request_target" else base_ref
    if name == "push":
        data.setdefault("ref", ref)
        data.setdefault("after", sha)
    merged_inputs = {**(data.get("inputs") or {}), **inputs}
    if merged_inputs:
        data["inputs"] = merged_inputs
    data.setdefault("repository", {"full_name": git.repository})
    action = data.get("action") if isinstance(data.get("action"), str) else None
    if name in ("pull_request", "pull_request_target") and action is None:
        action = "synchronize"
    return EventSpec(
        name, sha, ref, data, base_ref, head_ref, action,
        changed_files(git.root, sha, _dig(data, "before") or None) if sha == git.sha else None,
        merged_inputs,
    )  # fmt: skip


@dataclass(frozen=True)
class GuestLayout:
    """Where things live in the guest, as on a GitHub-hosted runner."""

    home: str = "/home/runner"
    tool_cache: str = "/opt/hostedtoolcache"

    def workspace(self, repository: str) -> str:
        name = repository.split("/")[-1]
        return f"{self.home}/work/{name}/{name}"

    @property
    def temp(self) -> str:
        return f"{self.home}/work/_temp"

    @property
    def actions(self) -> str:
        return f"{self.home}/work/_actions"

    @property
    def event_path(self) -> str:
        return f"{self.temp}/_github_workflow/event.json"


def _ref_parts(ref: str) -> tuple[str, str]:
    for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
        if ref.startswith(prefix):
            return ref[len(prefix) :], kind
    if ref.startswith("refs/pull/"):
        return ref[len("refs/") :].removeprefix("pull/"), "branch"
    return ref, "branch"


@dataclass(frozen=True)
class RunInfo:
    """Per-run facts that go into every job's ``github`` context."""

    run_id: str
    run_number: int
    workflow_name: str
    workflow_file: str
    git: GitInfo
    event: EventSpec
    layout: GuestLayout = field(default_factory=GuestLayout)


def github_context(run: RunInfo, job_id: str) -> dict[str, Any]:
    """The ``github`` context of job ``job_id`` (the step-dependent keys ``action``,
    ``action_path`` and the env-file paths are filled in per step)."""
    ev, git = run.event, run.git
    ref_name, ref_type = _ref_parts(ev.ref)
    if ev.name in ("pull_request", "pull_request_target"):
        ref_name = ev.ref.removeprefix("refs/pull/")
    owner = git.repository.split("/")[0]
    return {
        "action": "", "action_path": "", "action_ref": "", "action_repository": "",
        "actor": git.actor, "actor_id": "0", "api_url": API_URL, "base_ref": ev.base_ref,
        "env": "", "event": dict(ev.payload), "event_name": ev.name,
        "event_path": run.layout.event_path, "graphql_url": f"{API_URL}/graphql",
        "head_ref": ev.head_ref, "job": job_id, "output": "", "path": "",
        "ref": ev.ref, "ref_name": ref_name, "ref_protected": False, "ref_type": ref_type,
        "repository": git.repository, "repository_owner": owner,
        "repositoryUrl": f"git://github.com/{git.repository}.git", "retention_days": "90",
        "run_attempt": "1", "run_id": run.run_id, "run_number": str(run.run_number),
        "secret_source": "None", "server_url": SERVER_URL, "sha": ev.sha, "state": "",
        "step_summary": "", "token": "", "triggering_actor": git.actor,
        "workflow": run.workflow_name,
        "workflow_ref": f"{git.repository}/{run.workflow_file}@{ev.ref}",
        "workflow_sha": ev.sha, "workspace": run.layout.workspace(git.repository),
    }  # fmt: skip


def runner_context(layout: GuestLayout, name: str = "vmrunner") -> dict[str, Any]:
    """The ``runner`` context."""
    return {
        "name": name, "os": "Linux", "arch": "X64", "temp": layout.temp,
        "tool_cache": layout.tool_cache, "environment": "self-hosted", "debug": "",
    }  # fmt: skip


def default_env(github: Mapping[str, Any], runner: Mapping[str, Any]) -> dict[str, str]:
    """The variables every step gets (``CI``, ``GITHUB_*``, ``RUNNER_*``, ``HOME``)."""
    env = {"CI": "true", "GITHUB_ACTIONS": "true", "HOME": "/root"}
    for key in (
        "action", "action_path", "actor", "api_url", "base_ref", "env", "event_name",
        "event_path", "graphql_url", "head_ref", "job", "output", "path", "ref", "ref_name",
        "ref_type", "repository", "repository_owner", "run_attempt", "run_id", "run_number",
        "server_url", "sha", "state", "step_summary", "triggering_actor", "workflow",
        "workflow_ref", "workflow_sha", "workspace",
    ):  # fmt: skip
        env[f"GITHUB_{key.upper()}"] = str(github.get(key, ""))
    env["GITHUB_REF_PROTECTED"] = "false"
    for key in ("name", "os", "arch", "temp", "tool_cache", "environment"):
        env[f"RUNNER_{key.upper()}"] = str(runner[key])
    return env
