"""The typed model: what build_workflow extracts, and that it never fails on odd trees."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmrunner.workflow.loader import Pos, ScalarNode, load_text
from vmrunner.workflow.model import SCOPES, Workflow, build_permissions, build_workflow


def model(text: str) -> Workflow:
    workflow = build_workflow(load_text(text))
    assert workflow is not None
    return workflow


FULL = """\
name: CI
run-name: Deploy ${{ github.ref }}
on:
  push:
    branches: main
    paths-ignore: ['docs/**', '*.md']
  pull_request:
  schedule:
    - cron: '0 3 * * 1'
  workflow_dispatch:
    inputs:
      level:
        type: choice
        options: [info, debug]
        required: true
      plain:
  workflow_call:
    inputs:
      n: {type: number, default: 3}
    secrets:
      token: {required: true}
      other:
env: {A: 1}
defaults:
  run: {shell: bash, working-directory: src}
concurrency: ci-${{ github.ref }}
permissions: read-all
jobs:
  build:
    name: Build ${{ matrix.os }}
    runs-on: ${{ matrix.os }}
    strategy:
      fail-fast: false
      matrix: {os: [a, b]}
    timeout-minutes: 30
    concurrency:
      group: g
      cancel-in-progress: true
    steps:
      - uses: actions/checkout@v4
      - id: t
        name: Test
        if: success()
        run: make test
        shell: bash
        env: {X: y}
        continue-on-error: true
  deploy:
    needs: build
    uses: ./.github/workflows/deploy.yml
    with: {env: prod}
    secrets: inherit
    permissions:
      contents: write
"""


def test_workflow_level() -> None:
    wf = model(FULL)
    assert isinstance(wf.name, ScalarNode) and wf.name.text == "CI"
    assert isinstance(wf.run_name, ScalarNode) and "${{" in wf.run_name.text
    assert wf.defaults is not None and isinstance(wf.defaults.shell, ScalarNode)
    assert wf.defaults.shell.text == "bash"
    assert wf.concurrency is not None and isinstance(wf.concurrency.group, ScalarNode)
    assert wf.concurrency.group.text == "ci-${{ github.ref }}"
    assert wf.permissions is not None and wf.permissions.level("contents") == "read"


def test_triggers() -> None:
    on = model(FULL).on
    assert [e.name for e in on.events] == [
        "push", "pull_request", "schedule", "workflow_dispatch", "workflow_call",
    ]  # fmt: skip
    push = on.get("push")
    assert push is not None and push.pos == Pos(4, 3)
    assert push.filter("branches") == ("main",)
    assert push.filter("paths-ignore") == ("docs/**", "*.md")
    assert push.filter("tags") is None
    pull = on.get("pull_request")
    assert pull is not None and pull.config is None and pull.filter("branches") is None
    assert [c.text for c in on.schedules()] == ["0 3 * * 1"]
    level, plain = on.inputs("workflow_dispatch")
    assert (level.name, level.type, level.required, level.options) == (
        "level", "choice", True, ("info", "debug"),
    )  # fmt: skip
    assert (plain.name, plain.type, plain.required) == ("plain", "string", False)
    (n,) = on.inputs("workflow_call")
    assert n.type == "number" and isinstance(n.default, ScalarNode) and n.default.value == 3
    assert [(s.name, s.required) for s in on.call_secrets()] == [("token", True), ("other", False)]


@pytest.mark.parametrize(
    ("text", "events"),
    [("on: push\n", ["push"]), ("on: [push, pull_request]\n", ["push", "pull_request"])],
)
def test_short_trigger_forms(text: str, events: list[str]) -> None:
    wf = model(text + "jobs: {}\n")
    assert [e.name for e in wf.on.events] == events
    assert all(e.config is None for e in wf.on.events)


def test_jobs_and_steps() -> None:
    wf = model(FULL)
    build, deploy = wf.jobs
    assert (build.id, build.pos, build.is_reusable_call) == ("build", Pos(29, 3), False)
    assert build.display_name == "Build ${{ matrix.os }}"
    assert build.strategy is not None and build.strategy.matrix is not None
    assert build.concurrency is not None and build.concurrency.cancel_in_progress is not None
    checkout, test = build.steps
    assert checkout.uses is not None and checkout.uses.text == "actions/checkout@v4"
    assert checkout.run is None and checkout.index == 0
    assert test.id is not None and test.id.text == "t" and test.index == 1
    assert isinstance(test.if_, ScalarNode) and test.if_.text == "success()"
    assert isinstance(test.run, ScalarNode) and test.run.text == "make test"
    assert test.pos == Pos(41, 9)
    assert deploy.is_reusable_call and deploy.display_name == "deploy"
    assert [n.text for n in deploy.needs] == ["build"]
    assert isinstance(deploy.secrets, ScalarNode) and deploy.secrets.text == "inherit"
    assert deploy.permissions is not None
    assert deploy.permissions.level("contents") == "write"
    assert deploy.permissions.level("actions") == "none"
    assert deploy.steps == ()
    assert wf.job("deploy") is deploy and wf.job("nope") is None


@pytest.mark.parametrize(
    ("yaml", "scope", "level"),
    [
        ("write-all", "contents", "write"),
        ("write-all", "id-token", "write"),
        ("write-all", "models", "read"),
        ("read-all", "contents", "read"),
        ("read-all", "id-token", "none"),
        ("{}", "contents", "none"),
        ("{issues: write}", "issues", "write"),
        ("{issues: write}", "pages", "none"),
    ],
)
def test_permission_levels(yaml: str, scope: str, level: str) -> None:
    root = load_text(f"p: {yaml}\n")
    permissions = build_permissions(root.get("p"))  # type: ignore[union-attr]
    assert permissions is not None
    assert permissions.level(scope) == level
    assert list(permissions.levels()) == list(SCOPES)


def test_not_a_mapping_is_no_workflow() -> None:
    assert build_workflow(load_text("- a\n")) is None
    assert build_workflow(load_text("")) is None


KEYS = ["on", "jobs", "steps", "needs", "uses", "with", "secrets", "permissions", "strategy",
        "inputs", "workflow_call", "schedule", "cron", "defaults", "run", "concurrency",
        "group", "b", "type"]  # fmt: skip
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(["push", "x", "a/b"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(["on", "jobs", "env", "permissions"]), VALUES))
def test_build_is_total(data: dict[str, Any]) -> None:
    wf = build_workflow(load_text(json.dumps(data)))
    assert wf is not None
    for job in wf.jobs:
        assert job.display_name
    for event in wf.on.events:
        event.filter("branches")
    wf.on.inputs("workflow_call")
    wf.on.call_secrets()
    wf.on.schedules()
