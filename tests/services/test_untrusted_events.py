"""GitHub's rules for untrusted pull requests, through the service layer (fake guest on the
host, real git): a fork's ``pull_request`` gets no secrets; ``pull_request_target`` and
``workflow_run`` run the base branch's workflow on the base commit, never the PR's."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from runner.fakes import HostFactory
from vmrunner.config import load_settings
from vmrunner.errors import ConfigError
from vmrunner.runner.context import EventSpec, is_fork_pull_request
from vmrunner.services.runrequest import RunRequest
from vmrunner.services.workflows import RunSlot, run_workflows

WORKFLOW = """
on: [push, pull_request, pull_request_target, workflow_run]
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: echo "{label} secret=${{{{ secrets.TOKEN }}}} sha=${{{{ github.sha }}}}" >> {out}
"""


def git(repo: Path, *argv: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", *argv],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def _repo(tmp_path: Path, out: Path) -> tuple[Path, str, str]:
    """main holds the trusted workflow; branch ``pr`` (checked out) rewrote it."""
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    wf = repo / ".github" / "workflows" / "ci.yml"
    git(repo, "init", "-q", "-b", "main")
    wf.write_text(WORKFLOW.format(label="base", out=out))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "pr")
    wf.write_text(WORKFLOW.format(label="pr", out=out))
    git(repo, "commit", "-qam", "evil")
    return repo, base, git(repo, "rev-parse", "HEAD")


def _run(tmp_path: Path, repo: Path, event: str, payload: dict[str, object] | None) -> None:
    settings = load_settings(env={"VMRUNNER_HOME": str(tmp_path / "state"), **os.environ})
    event_path = None
    if payload is not None:
        event_path = tmp_path / "event.json"
        event_path.write_text(json.dumps(payload))
    req = RunRequest(repo, event=event, event_path=event_path, secrets=(("TOKEN", "t0ps3cret"),))
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    outcome = asyncio.run(
        run_workflows(settings, req, RunSlot("1", run_dir, None), factory=HostFactory())
    )
    assert outcome.document["status"] == "success", outcome.document


def _pr(head: str, base: str = "o/r") -> dict[str, object]:
    return {
        "action": "opened",
        "number": 5,
        "repository": {"full_name": base},
        "pull_request": {
            "number": 5,
            "head": {"ref": "pr", "repo": {"full_name": head}},
            "base": {"ref": "main", "repo": {"full_name": base}},
        },
    }


@pytest.mark.parametrize(
    ("head", "gets_secret"), [("fork/r", False), ("o/r", True)], ids=["fork", "same-repo"]
)
def test_a_fork_pull_request_gets_no_secrets(tmp_path: Path, head: str, gets_secret: bool) -> None:
    out = tmp_path / "out.txt"
    repo, _base, pr_sha = _repo(tmp_path, out)
    _run(tmp_path, repo, "pull_request", _pr(head))
    line = out.read_text().strip()
    assert line.startswith("pr secret=") and f"sha={pr_sha}" in line
    assert ("secret=t0ps3cret " if gets_secret else "secret= ") in line


@pytest.mark.parametrize(
    ("event", "payload"),
    [("pull_request_target", _pr("fork/r")), ("pull_request_target", None), ("workflow_run", None)],
)
def test_base_events_run_the_base_branchs_workflow_on_the_base_commit(
    tmp_path: Path, event: str, payload: dict[str, object] | None
) -> None:
    out = tmp_path / "out.txt"
    repo, base_sha, _pr_sha = _repo(tmp_path, out)
    _run(tmp_path, repo, event, payload)
    line = out.read_text().strip()
    assert line.startswith("base secret=") and f"sha={base_sha}" in line  # not the PR's


def test_a_base_event_without_the_base_branch_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    repo, _base, _pr_sha = _repo(tmp_path, out)
    git(repo, "branch", "-q", "-m", "main", "trunk")
    with pytest.raises(ConfigError, match="base branch 'main'"):
        _run(tmp_path, repo, "pull_request_target", None)
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "payload", "fork"),
    [
        ("pull_request", _pr("fork/r"), True),
        ("pull_request", _pr("o/r"), False),
        ("pull_request", {}, False),
        ("pull_request_target", _pr("fork/r"), False),  # runs the base's code: secrets as GitHub
        ("push", _pr("fork/r"), False),
    ],
)
def test_is_fork_pull_request(name: str, payload: dict[str, object], fork: bool) -> None:
    assert is_fork_pull_request(EventSpec(name, "s", "r", payload)) is fork
