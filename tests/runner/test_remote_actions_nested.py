"""``pre``/``post`` of JavaScript actions nested in composite actions, and the deprecated
``::save-state::`` command, against the fake guest (steps run on the host with its node)
and action repositories that are local bare git repositories reached through ``file://``.

What GitHub's runner does (``ActionManager.PrepareActionsRecursiveAsync``,
``CompositeActionHandler``, ``ActionRunner.RunAsync``): the ``pre`` of a JavaScript action
nested (at any depth) in a remote composite action that is a job step runs at the start of
the job, in step order, as the composite's own pre; a ``post`` is registered as soon as its
action's ``pre`` or ``main`` has run, and posts run in reverse order at the end of the job;
an action nested in a local composite (``./path``, read when the step starts) gets no pre.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .action_repos import publish
from .test_engine import _entries
from .test_remote_actions import _remote, _run

PRE = 'console.log("::save-state name=from_pre::p-" + process.env.INPUT_TAG);\n'
MAIN = r"""
const fs = require("fs");
const env = process.env;
console.log(`main ${env.INPUT_TAG} saw pre=${env.STATE_from_pre || ""}`);
console.log(`::save-state name=from_main::m-${env.INPUT_TAG}`);
console.log("::save-state name=both::command");
fs.appendFileSync(env.GITHUB_STATE, "both=file\n");
"""
POST = r"""
const env = process.env;
console.log(`post ${env.INPUT_TAG} pre=${env.STATE_from_pre || ""} main=${env.STATE_from_main || ""} both=${env.STATE_both || ""}`);
"""
STATEFUL_YML = """
name: stateful
inputs: {tag: {required: true}}
runs: {using: node20, pre: pre.js, main: main.js, post: post.js}
"""
NO_PRE_YML = """
name: no-pre
inputs: {tag: {required: true}}
runs: {using: node20, pre: pre.js, pre-if: "false", main: main.js, post: post.js}
"""
INNER_YML = """
inputs: {tag: {required: true}}
runs:
  using: composite
  steps:
    - uses: acme/stateful@v1
      with: {tag: "${{ inputs.tag }}"}
    - uses: acme/nopre@v1
      with: {tag: "${{ inputs.tag }}-np"}
"""
OUTER_YML = """
inputs: {tag: {required: true}}
runs:
  using: composite
  steps:
    - shell: bash
      run: echo "outer main"
    - uses: acme/inner@v1
      with: {tag: "${{ inputs.tag }}"}
"""


@pytest.fixture(scope="module")
def nested_remotes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nested-remotes")
    scripts = {"pre.js": PRE, "main.js": MAIN, "post.js": POST}
    publish(root, "acme/stateful", [{"action.yml": STATEFUL_YML, **scripts}], {"v1": 0})
    publish(root, "acme/nopre", [{"action.yml": NO_PRE_YML, **scripts}], {"v1": 0})
    publish(root, "acme/inner", [{"action.yml": INNER_YML}], {"v1": 0})
    publish(root, "acme/outer", [{"action.yml": OUTER_YML}], {"v1": 0})
    return root


WORKFLOW = """
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - id: top
        uses: acme/stateful@v1
        with: {tag: top}
      - id: deep
        uses: acme/outer@v1
        with: {tag: deep}
      - id: skipped
        if: false
        uses: acme/inner@v1
        with: {tag: skipped}
      - run: |
          mkdir -p local
          printf '%s\\n' 'runs:' '  using: composite' '  steps:' \\
            '    - uses: acme/stateful@v1' '      with: {tag: local}' > local/action.yml
      - id: local
        uses: ./local
"""


def test_nested_pre_and_post_run_as_githubs_runner_runs_them(
    tmp_path: Path, nested_remotes: Path
) -> None:
    env, summaries = _run(tmp_path, WORKFLOW, _remote(tmp_path, nested_remotes))
    assert summaries["j"].result == "success", env.errors
    job = _entries(env)["j"][0]
    logs = [(s.name, s.log_tail) for s in job.steps]
    # the pre of every remote node action at any depth, in step order; none for nopre
    # (pre-if false), none for the action in the local composite, and the skipped step's
    # nested action has its pre too (the step's if: is decided when the step starts)
    assert [n for n, _ in logs if n.startswith("Pre ")] == ["Pre Run acme/stateful@v1"] * 3
    assert all("save-state` command is deprecated" in t for n, t in logs if n.startswith("Pre "))
    assert [s.id for s in job.steps[:3]] == ["pre-top", "pre-__step1", "pre-__step1"]
    steps = {s.id: s for s in job.steps}
    assert "main top saw pre=p-top" in steps["top"].log_tail
    assert "main deep saw pre=p-deep" in steps["deep"].log_tail
    assert "main deep-np saw pre=\n" in steps["deep"].log_tail + "\n"
    assert "main local saw pre=\n" in steps["local"].log_tail + "\n"
    assert steps["skipped"].outcome == "skipped"
    posts = [tail for name, tail in logs if name.startswith("Post ")]
    said = [line for t in posts for line in t.splitlines() if line.startswith("post ")]
    # reverse order of registration: local (its main), deep-np (its main), skipped and
    # deep and top (each at its pre); the file's state wins over the command's
    assert said == [
        "post local pre= main=m-local both=file",
        "post deep-np pre= main=m-deep-np both=file",
        "post skipped pre=p-skipped main= both=",
        "post deep pre=p-deep main=m-deep both=file",
        "post top pre=p-top main=m-top both=file",
    ]
