"""Remote, JavaScript and local actions in a real VM (TCG), through the real CLI: one job
(one VM) exercises the node action (pre, main, post, state, outputs) fetched at a tag and
a sha, a remote composite action using it, a failing main whose post still runs, a node
version the image lacks, and a local node action written by an earlier step. The action
repositories are bare git repositories on this host (``file://``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import git_repo, vmrunner
from vmrunner.results import validate_result

from .action_repos import git_url, publish_all

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

WORKFLOW = """
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: tag
        uses: acme/greet@v1
        with: {who: vm}
      - id: sha
        uses: acme/greet@SHA2
        with: {who: sha}
      - id: combo
        uses: acme/combo@v1
        with: {name: nested}
      - id: fails
        continue-on-error: true
        uses: acme/greet@v1
        with: {who: x, fail: "true"}
      - id: node
        continue-on-error: true
        uses: acme/new@v1
      - id: write
        run: |
          mkdir -p tools/hello
          printf 'runs: {using: node20, main: index.js}\\n' > tools/hello/action.yml
          echo 'require("fs").appendFileSync(process.env.GITHUB_OUTPUT, "v=" + process.version + "\\n")' > tools/hello/index.js
          touch "$RUNNER_TEMP/probe" && test "$ImageOS" = ubuntu22
      - id: local
        uses: ./tools/hello
      - run: |
          echo "got ${{ steps.tag.outputs.message }}|${{ steps.sha.outputs.message }}|${{ steps.combo.outputs.said }}|${{ steps.local.outputs.v }}"
          echo "mode $(stat -c %A /home/runner/work/_actions/acme/greet/v1/action.yml)"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import os

    tmp = tmp_path_factory.mktemp("remote-vm")
    shas = publish_all(tmp / "remotes", tmp / "build")
    wf = WORKFLOW.replace("SHA2", shas["acme/greet"][1])
    repo = git_repo(tmp / "repo", {".github/workflows/wf.yml": wf})
    env = {**os.environ, "VMRUNNER_HOME": str(tmp / "state"),
           "VMRUNNER_GITHUB_GIT_URL": git_url(tmp / "remotes")}  # fmt: skip
    out = tmp / "result.json"
    proc = vmrunner(["run", "--accel", "tcg", "--json", str(out)], env, timeout=900, cwd=repo)
    assert out.exists(), proc.stderr.decode()[-3000:]
    doc: dict[str, Any] = json.loads(out.read_text())
    assert validate_result(doc) == []
    return doc


def test_node_and_composite_actions_run_in_the_vm(run: dict[str, Any]) -> None:
    job = run["jobs"][0]
    assert job["status"] == "success"  # the failing steps have continue-on-error
    steps = {s["id"]: s for s in job["steps"]}
    names = [s["name"] for s in job["steps"]]
    assert names[:3] == ["Pre Run acme/greet@v1", names[1], "Pre Run acme/greet@v1"]
    assert "pre ran (one)" in job["steps"][0]["log_tail"]
    assert "main one: pre state=pre-one" in steps["tag"]["log_tail"]
    assert "origin acme/greet@v1" in steps["tag"]["log_tail"]
    assert "runner Linux X64 ubuntu22" in steps["tag"]["log_tail"]
    report = next(s for s in job["steps"] if "got " in s["log_tail"])
    assert "got hello vm from one|hello sha from two|hi nested from one|v18." in report["log_tail"]
    assert report["outcome"] == "success", report["log_tail"]
    assert (
        steps["fails"]["outcome"] == "failure"
        and "asked to fail (one)" in steps["fails"]["log_tail"]
    )
    assert steps["node"]["outcome"] == "failure"
    assert (
        "acme/new@v1" in steps["node"]["log_tail"] and "needs node 24" in steps["node"]["log_tail"]
    )
    assert "has node v18." in steps["node"]["log_tail"]
    posts = [s for s in job["steps"] if s["name"].startswith("Post ")]
    assert [p["outcome"] for p in posts] == ["success"] * 4
    assert "post saw pre-one main-one" in posts[0]["log_tail"]  # the failed main's post
    assert "post saw pre-two main-two" in posts[2]["log_tail"]
    # the greet nested in combo had its pre at the start of the job too, as on GitHub
    assert [s["id"] for s in job["steps"][:4]] == ["pre-tag", "pre-sha", "pre-g", "pre-fails"]
    assert "post saw pre-one main-one" in posts[1]["log_tail"]
    assert job["steps"][-4:] == posts
    assert "mode -r--r--r--" in report["log_tail"]  # copied in read-only
