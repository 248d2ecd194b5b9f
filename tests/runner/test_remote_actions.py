"""Remote and JavaScript actions against a fake guest that runs on the host (its node):
action repositories are local bare git repositories reached through ``file://``, fetched
by the real :class:`vmrunner.github.repos.RepoCache`."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

from vmrunner.github.repos import RepoCache
from vmrunner.runner import actions
from vmrunner.runner.actions import ActionError
from vmrunner.runner.context import GuestLayout, RunInfo, git_info, make_event
from vmrunner.runner.engine import RunEnv, WorkflowExecution
from vmrunner.runner.node_actions import check_node, node_major
from vmrunner.runner.output import NullReporter, OutputSink
from vmrunner.runner.remote_actions import RemoteActions, parse_remote
from vmrunner.workflow.check import load_workflow
from vmrunner.workflow.masking import Masker

from .action_repos import git_url, publish_all
from .fakes import HostFactory
from .test_engine import _entries, _git_repo


@pytest.fixture(scope="module")
def remotes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("remotes")
    return root, publish_all(root, tmp_path_factory.mktemp("build"))


def _remote(tmp_path: Path, remotes: Path) -> RemoteActions:
    cache = tmp_path / "cache"
    return RemoteActions(RepoCache(cache, git_url(remotes)), cache / "actions")


def _run(tmp_path: Path, text: str, remote: RemoteActions) -> tuple[RunEnv, dict[str, Any]]:
    git = git_info(_git_repo(tmp_path / "repo"))
    layout = GuestLayout(home=str(tmp_path / "guest"), tool_cache=str(tmp_path / "tools"))
    info = RunInfo("42", 7, "wf", "wf.yml", git, make_event(git, "push", None, {}), layout)
    workflow = load_workflow(textwrap.dedent(text), "wf.yml")
    env = RunEnv(info, HostFactory(), NullReporter(), Masker(), tmp_path / "run", remote=remote)
    summaries = asyncio.run(WorkflowExecution(env, workflow, "wf.yml").run())
    return env, dict(summaries)


GOOD = """
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: echo first step
      - id: tag
        uses: acme/greet@v1
        with: {who: tag}
      - id: branch
        uses: acme/greet@main
        with: {who: branch, greeting: hey}
      - id: sha
        uses: acme/greet@SHA1
        with: {who: sha}
      - id: combo
        uses: acme/combo@v1
        with: {name: composer}
      - id: fails
        uses: acme/greet@v1
        continue-on-error: true
        with: {who: x, fail: "true"}
      - run: |
          echo "outputs ${{ steps.tag.outputs.message }}|${{ steps.branch.outputs.message }}|${{ steps.sha.outputs.message }}|${{ steps.combo.outputs.said }}"
          echo "fails ${{ steps.fails.outcome }}/${{ steps.fails.conclusion }}"
"""


def _logs(env: RunEnv) -> dict[str, str]:
    return {s.name: s.log_tail for s in _entries(env)["j"][0].steps}


def test_node_actions_at_a_tag_branch_and_sha_with_pre_post_state_and_composite(
    tmp_path: Path, remotes: tuple[Path, dict[str, list[str]]]
) -> None:
    root, shas = remotes
    wf = GOOD.replace("SHA1", shas["acme/greet"][0])
    env, summaries = _run(tmp_path, wf, _remote(tmp_path, root))
    assert summaries["j"].result == "success", env.errors
    job = _entries(env)["j"][0]
    names = [s.name for s in job.steps]
    # pre scripts run first (one per use of greet, the one nested in combo too, in step
    # order), posts last, in reverse order
    assert names[:5] == ["Pre Run acme/greet@v1", "Pre Run acme/greet@main",
                         f"Pre Run acme/greet@{shas['acme/greet'][0]}", "Pre Run acme/greet@v1",
                         "Pre Run acme/greet@v1"]  # fmt: skip
    assert [s.id for s in job.steps[:5]] == [
        "pre-tag",
        "pre-branch",
        "pre-sha",
        "pre-g",
        "pre-fails",
    ]
    posts = [n for n in names if n.startswith("Post ")]
    assert posts == ["Post Run acme/greet@v1", "Post Run acme/greet@v1", f"Post Run acme/greet@{shas['acme/greet'][0]}",
                     "Post Run acme/greet@main", "Post Run acme/greet@v1"]  # fmt: skip
    assert names[-5:] == posts
    logs = _logs(env)
    out = logs[
        'Run echo "outputs ${{ steps.tag.outputs.message }}|${{ steps.branch.outputs.message }}|${{ steps.sha.outputs.message }}|${{ steps.combo.outputs.said }}"'
    ]
    assert (
        "outputs hello tag from one|hey branch from two|hello sha from one|hi composer from one"
        in out
    )
    assert "fails failure/success" in out
    steps = {s.id: s for s in job.steps}
    assert "main one: pre state=pre-one" in steps["tag"].log_tail
    assert "main two: pre state=pre-two" in steps["branch"].log_tail
    assert "origin acme/greet@v1" in steps["tag"].log_tail
    assert f"origin acme/greet@{shas['acme/greet'][0]}" in steps["sha"].log_tail
    assert "runner Linux X64 ubuntu22" in steps["tag"].log_tail
    assert "temp true cwd=true" in steps["tag"].log_tail
    assert "asked to fail (one)" in steps["fails"].log_tail
    assert steps["fails"].outcome == "failure"
    # the failed main's post still ran, with the state its pre and main saved
    post_logs = [s.log_tail for s in job.steps if s.name.startswith("Post ")]
    assert "post saw pre-one main-one" in post_logs[0]
    assert "post saw pre-two main-two" in post_logs[3]
    # the greet nested in the composite had its pre too, whose state reached its main and post
    assert "post saw pre-one main-one" in post_logs[1]
    assert "main one: pre state=pre-one" in steps["combo"].log_tail
    assert "combo ran at" in steps["combo"].log_tail


BAD = """
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - {id: ref, uses: acme/greet@nope, continue-on-error: true, with: {who: a}}
      - {id: repo, uses: acme/missing@v1, continue-on-error: true}
      - {id: noyml, uses: acme/empty@v1, continue-on-error: true}
      - {id: input, uses: acme/greet@v1, continue-on-error: true}
      - {id: node, uses: acme/new@v1, continue-on-error: true}
      - {id: deep, uses: acme/loop@v1, continue-on-error: true}
      - {id: docker, uses: "docker://alpine:3", continue-on-error: true}
      - {id: local, uses: ./not/there, continue-on-error: true}
      - id: after
        run: echo "the run went on"
      - id: strict
        uses: acme/greet@nope
        with: {who: a}
      - id: skipped
        run: echo never
      - id: on-failure
        if: failure()
        run: echo "failure() ran"
"""


def test_bad_actions_are_clear_step_errors_and_the_run_goes_on(
    tmp_path: Path, remotes: tuple[Path, dict[str, list[str]]]
) -> None:
    env, summaries = _run(tmp_path, BAD, _remote(tmp_path, remotes[0]))
    assert summaries["j"].result == "failure"
    steps = {s.id: s for s in _entries(env)["j"][0].steps}
    expected = {
        "ref": ["acme/greet@nope", "has no ref or commit nope"],
        "repo": ["acme/missing@v1", "no repository acme/missing"],
        "noyml": ["acme/empty@v1", "has no action.yml or action.yaml"],
        "input": ["acme/greet@v1", "required input 'who'"],
        "node": ["acme/new@v1", "needs node 24"],
        "deep": ["nest more than 10 levels", "acme/loop@v1"],
        "docker": ["docker://alpine:3", "container actions are not supported yet"],
        "local": ["./not/there", "was not found"],
    }
    for step_id, words in expected.items():
        assert (steps[step_id].outcome, steps[step_id].conclusion) == ("failure", "success")
        for word in words:
            assert word in steps[step_id].log_tail, (step_id, steps[step_id].log_tail)
    assert "the run went on" in steps["after"].log_tail
    assert steps["strict"].conclusion == "failure"
    assert steps["skipped"].outcome == "skipped"
    assert "failure() ran" in steps["on-failure"].log_tail
    assert any("acme/missing@v1" in e.message for e in env.errors)
    # an action whose main never started (no node for it) has no post
    assert not [s.name for s in _entries(env)["j"][0].steps if s.name.startswith("Post ")]


LOCAL = """
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: |
          mkdir -p tools/hello tools/combo
          cat > tools/hello/action.yml <<'EOF'
          inputs: {name: {default: local}}
          outputs: {said: {description: x}}
          runs: {using: node20, main: index.js}
          EOF
          cat > tools/hello/index.js <<'EOF'
          const fs = require("fs");
          fs.appendFileSync(process.env.GITHUB_OUTPUT, `said=hi ${process.env.INPUT_NAME}\\n`);
          console.log("local node at " + process.env.GITHUB_ACTION_PATH);
          EOF
          cat > tools/combo/action.yaml <<'EOF'
          runs:
            using: composite
            steps:
              - uses: ./tools/hello
                id: h
              - run: echo "nested @{{ steps.h.outputs.said }}"
                shell: sh
          EOF
          sed -i 's/@{{/$\\{{/' tools/combo/action.yaml
      - id: hello
        uses: ./tools/hello
        with: {name: written}
      - id: combo
        uses: ./tools/combo
      - run: echo "got ${{ steps.hello.outputs.said }}"
"""


def test_local_actions_are_read_from_the_workspace_when_the_step_starts(
    tmp_path: Path, remotes: tuple[Path, dict[str, list[str]]]
) -> None:
    env, summaries = _run(tmp_path, LOCAL, _remote(tmp_path, remotes[0]))
    assert summaries["j"].result == "success", env.errors
    steps = _entries(env)["j"][0].steps
    assert steps[1].outputs["said"] == "hi written"
    assert (
        "local node at " + str(tmp_path / "guest/work/repo/repo/tools/hello") in steps[1].log_tail
    )
    assert "nested hi local" in steps[2].log_tail
    assert "got hi written" in steps[3].log_tail


def test_the_cache_serves_a_fetched_action_without_the_repository(
    tmp_path: Path, remotes: tuple[Path, dict[str, list[str]]]
) -> None:
    """A sha already fetched needs neither the network nor the repository: the tree is
    cached per sha and the mirror keeps the commit."""
    root, shas = remotes
    sha = shas["acme/greet"][0]
    first = _remote(tmp_path, root)
    action = asyncio.run(first.load(f"acme/greet@{sha}"))
    assert (
        action.node is not None and action.host_dir == tmp_path / "cache/actions/acme/greet" / sha
    )
    gone = RemoteActions(RepoCache(tmp_path / "cache", "file:///nonexistent/{owner}/{repo}.git"),
                         tmp_path / "cache" / "actions")  # fmt: skip
    again = asyncio.run(gone.load(f"acme/greet@{sha}"))
    assert again.host_dir == action.host_dir and (again.repository, again.ref) == (
        "acme/greet",
        sha,
    )
    with pytest.raises(ActionError, match=r"cannot be fetched.*acme/greet at 'v1'"):
        asyncio.run(gone.load("acme/greet@v1"))


@pytest.mark.parametrize(
    ("uses", "expected"),
    [
        ("a/b@v1", ("a", "b", "", "v1")),
        ("a/b/sub/dir@main", ("a", "b", "sub/dir", "main")),
        ("actions/setup-node@" + "f" * 40, ("actions", "setup-node", "", "f" * 40)),
    ],
)
def test_parse_remote(uses: str, expected: tuple[str, str, str, str]) -> None:
    ref = parse_remote(uses)
    assert (ref.owner, ref.repo, ref.path, ref.ref) == expected


@pytest.mark.parametrize(
    "uses", ["a/b", "a@v1", "a/b@", "a/../b@v1", "a/b/../c@v1", "a/b@-x", "a/b c@v1"]
)
def test_parse_remote_refuses_malformed_references(uses: str) -> None:
    with pytest.raises(ActionError, match="'" + uses.replace("(", r"\(")):
        parse_remote(uses)


@pytest.mark.parametrize(
    ("using", "version", "ok", "warned"),
    [
        ("node20", "v20.11.1", True, False),
        ("node20", "v18.19.0", True, True),
        ("node20", "v16.0.0", False, False),
        ("node16", "v18.19.0", True, False),
        ("node12", "v12.22.0", True, False),
        ("node24", "v22.1.0", False, False),
        ("node24", "", False, False),
    ],
)
def test_node_version_policy(using: str, version: str, ok: bool, warned: bool) -> None:
    action = actions.parse_action("o/r@v1", _yml(f"runs: {{using: {using}, main: m.js}}"))
    sink = OutputSink("j", Masker(), NullReporter(), [])  # type: ignore[arg-type]
    node = "/usr/bin/node" if version else ""
    if ok:
        assert check_node(action, "debian", node, version, sink) == "/usr/bin/node"
        assert ("asks for" in sink.tail_text()) == warned
    else:
        with pytest.raises(ActionError, match=r"o/r@v1.*needs node"):
            check_node(action, "debian", node, version, sink)


def _yml(text: str) -> Any:
    from vmrunner.workflow.loader import load_text

    return load_text(text)


@pytest.mark.parametrize(
    ("text", "major"), [("v18.19.0\n", 18), ("v24.0.1", 24), ("node", None), ("", None)]
)
def test_node_major(text: str, major: int | None) -> None:
    assert node_major(text) == major


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ("{using: docker, image: Dockerfile}", "container actions are not supported yet"),
        ("{using: node20}", "has no runs.main"),
        ("{using: node10, main: x.js}", "runs.using: node10"),
        ("{}", "runs.using: missing"),
    ],
)
def test_action_yml_that_cannot_run(runs: str, message: str) -> None:
    with pytest.raises(ActionError, match=message):
        actions.parse_action("o/r@v1", _yml(f"runs: {runs}"))
