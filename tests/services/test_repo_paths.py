"""Repository content stays in the repository: workflow files, local actions and called
workflows whose real path leaves the checkout (a committed symlink, ``..``) are errors that
show nothing of the file they point to."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from runner.fakes import HostFactory
from vmrunner.config import load_settings
from vmrunner.errors import ConfigError, UserInputError
from vmrunner.runner import actions
from vmrunner.services.checks import workflow_files
from vmrunner.services.runrequest import RunRequest
from vmrunner.services.workflows import RunSlot, run_workflows

HOST_SECRET = "root:$6$SECRET-HASH-OF-THE-HOST:19000:0:99999:7:::"
OK_WORKFLOW = "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: 'true'\n"


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    """A host file outside the repository, standing for /etc/shadow."""
    path = tmp_path / "host" / "shadow"
    path.parent.mkdir()
    path.write_text(HOST_SECRET + "\n")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".github" / "workflows").mkdir(parents=True)
    return root


def _commit(root: Path) -> None:
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "c"]):  # fmt: skip
        subprocess.run(["git", "-C", str(root), *argv], check=True, capture_output=True)


def test_a_workflow_symlinked_to_a_host_file_is_an_error_without_its_content(
    repo: Path, host_file: Path, tmp_path: Path
) -> None:
    (repo / ".github" / "workflows" / "ok.yml").write_text(OK_WORKFLOW)
    (repo / ".github" / "workflows" / "ci.yml").symlink_to(host_file)
    _commit(repo)
    with pytest.raises(ConfigError) as info:
        workflow_files([], repo)
    assert "ci.yml" in str(info.value) and "outside the repository" in str(info.value)
    assert "SECRET" not in str(info.value) and str(host_file) not in str(info.value)
    settings = load_settings(env={**os.environ, "VMRUNNER_HOME": str(tmp_path / "state")})
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError) as info:  # the run reads no workflow at all
        asyncio.run(
            run_workflows(
                settings,
                RunRequest(repo),
                RunSlot("1", tmp_path / "run", None),
                factory=HostFactory(),
            )  # fmt: skip
        )
    assert "SECRET" not in str(info.value)


def test_a_workflows_directory_symlinked_out_of_the_repository_is_an_error(
    repo: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.yml").write_text(OK_WORKFLOW)
    (repo / ".github" / "workflows").rmdir()
    (repo / ".github" / "workflows").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="outside the repository"):
        workflow_files([], repo)


def test_files_inside_and_files_the_user_names_outside_are_read(repo: Path, tmp_path: Path) -> None:
    inside = repo / ".github" / "workflows" / "a.yml"
    inside.write_text(OK_WORKFLOW)
    (repo / ".github" / "workflows" / "b.yml").symlink_to(inside)  # a link within: fine
    named = tmp_path / "mine.yml"
    named.write_text(OK_WORKFLOW)
    assert workflow_files([], repo) == [inside, repo / ".github" / "workflows" / "b.yml"]
    assert workflow_files([named], repo) == [named]


@pytest.mark.parametrize("how", ["symlinked dir", "dot-dot", "symlinked action.yml"])
def test_a_local_action_leading_out_of_the_repository_is_refused(
    repo: Path, tmp_path: Path, how: str
) -> None:
    outside = tmp_path / "outside-action"
    outside.mkdir()
    (outside / "action.yml").write_text("runs:\n  using: composite\n  steps: []\n")
    uses = "./act"
    if how == "symlinked dir":
        (repo / "act").symlink_to(outside)
    elif how == "dot-dot":
        uses = "./../outside-action"
    else:
        (repo / "act").mkdir()
        (repo / "act" / "action.yml").symlink_to(outside / "action.yml")
    with pytest.raises(actions.ActionError, match="outside the repository"):
        actions.locate(uses, repo, ())
    (repo / "real").mkdir()
    (repo / "real" / "action.yml").write_text("runs:\n  using: composite\n  steps: []\n")
    assert actions.locate("./real", repo, ()) == repo / "real"


def test_a_called_workflow_symlinked_to_a_host_file_fails_the_job_without_its_content(
    repo: Path, host_file: Path, tmp_path: Path
) -> None:
    wf = repo / ".github" / "workflows"
    wf.joinpath("ci.yml").write_text(
        "on: push\njobs:\n  call:\n    uses: ./.github/workflows/lib/called.yml\n"
    )
    (wf / "lib").mkdir()
    (wf / "lib" / "called.yml").symlink_to(host_file)
    _commit(repo)
    settings = load_settings(env={**os.environ, "VMRUNNER_HOME": str(tmp_path / "state")})
    (tmp_path / "run").mkdir()
    try:
        outcome = asyncio.run(
            run_workflows(
                settings,
                RunRequest(repo),
                RunSlot("1", tmp_path / "run", None),
                factory=HostFactory(),
            )  # fmt: skip
        )
    except UserInputError as exc:  # refused up front by the workflow check: also fine
        assert "SECRET" not in str(exc)
        return
    text = str(outcome.document)
    assert outcome.document["status"] != "success"
    assert "SECRET" not in text


def test_check_does_not_show_a_called_workflow_outside_the_repository(
    repo: Path, host_file: Path
) -> None:
    from vmrunner.services.checks import check_paths

    wf = repo / ".github" / "workflows"
    wf.joinpath("ci.yml").write_text(
        "on: push\njobs:\n  call:\n    uses: ./.github/workflows/lib/c.yml\n"
    )
    (wf / "lib").mkdir()
    (wf / "lib" / "c.yml").symlink_to(host_file)
    diagnostics = check_paths([], repo)
    assert diagnostics  # the call cannot be resolved: a problem is reported
    assert "SECRET" not in repr(diagnostics)
