"""Checking the actions a workflow's steps use (:mod:`vmrunner.workflow.action_check`),
pure: each remote ``uses:`` is resolved by a table instead of a repository."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.workflow.action_check import (
    ActionInfo,
    ActionResolution,
    check_actions,
    is_checked,
)
from vmrunner.workflow.check import Severity, check_text
from vmrunner.workflow.loader import load_text
from vmrunner.workflow.model import Workflow, build_workflow

GREET = ActionResolution(ActionInfo("node20", (("who", True), ("greeting", False))))
TABLE = {
    "acme/greet@v1": GREET,
    "acme/box@v1": ActionResolution(ActionInfo("docker", ())),
    "acme/gone@v1": ActionResolution(error="The action 'acme/gone@v1' cannot be fetched"),
    "acme/far@v1": ActionResolution(note="acme/far@v1 is not in the action cache"),
    "acme/far/sub@v1": ActionResolution(note="acme/far@v1 is not in the action cache"),
}


def _workflow(steps: str) -> Workflow:
    text = "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n"
    text += textwrap.indent(textwrap.dedent(steps).strip() + "\n", "      ")
    workflow = build_workflow(load_text(text, "wf.yml"))
    assert workflow is not None
    return workflow


def _check(steps: str) -> list[tuple[int, int, str, str]]:
    found = check_actions(_workflow(steps), "wf.yml", TABLE.__getitem__, set())
    return [(d.line, d.col, str(d.severity), d.message) for d in found]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # all inputs known (any case), the required one given: nothing
        ("- uses: acme/greet@v1\n  with: {WHO: me, greeting: hi}", []),
        (
            "- uses: acme/greet@v1\n  with: {who: me, colour: red}",
            [
                (
                    7,
                    25,
                    "warning",
                    "Unexpected input(s) 'colour', valid inputs are ['who', 'greeting'] (acme/greet@v1)",
                )
            ],
        ),  # fmt: skip
        (
            "- run: echo\n- uses: acme/greet@v1\n  with: {greeting: hi}",
            [
                (
                    7,
                    9,
                    "error",
                    "The action 'acme/greet@v1' needs its required input 'who' (give it under with:)",
                )
            ],
        ),  # fmt: skip
        (
            "- uses: acme/box@v1",
            [
                (
                    6,
                    15,
                    "warning",
                    "The step uses the Docker action 'acme/box@v1': vmrunner will "
                    "not run it (container actions are not supported yet)",
                )
            ],
        ),  # fmt: skip
        (
            "- uses: docker://alpine:3",
            [
                (
                    6,
                    15,
                    "warning",
                    "The step uses the Docker action 'docker://alpine:3': vmrunner "
                    "will not run it (container actions are not supported yet)",
                )
            ],
        ),  # fmt: skip
        ("- uses: acme/gone@v1", [(6, 15, "error", "The action 'acme/gone@v1' cannot be fetched")]),
        # a note once per action, whichever path of it a step names
        (
            "- uses: acme/far@v1\n- uses: acme/far/sub@v1\n- uses: acme/far@v1",
            [(6, 15, "note", "not checked: acme/far@v1 is not in the action cache")],
        ),
        # never looked at: checkout (built in), local actions, expressions
        ("- uses: actions/checkout@v4\n  with: {anything: 1}", []),
        ("- uses: ./local/action\n- uses: $/root/action\n- uses: ${{ matrix.action }}", []),
    ],
)
def test_check_actions(steps: str, expected: list[tuple[int, int, str, str]]) -> None:
    assert _check(steps) == expected


def test_notes_are_given_once_per_session() -> None:
    seen: set[str] = set()
    workflow = _workflow("- uses: acme/far@v1")
    first = check_actions(workflow, "a.yml", TABLE.__getitem__, seen)
    again = check_actions(workflow, "b.yml", TABLE.__getitem__, seen)
    assert [d.severity for d in first] == [Severity.NOTE] and again == []


def test_check_text_adds_what_extra_finds() -> None:
    text = "on: push\njobs:\n  j:\n    runs-on: x\n    steps:\n      - uses: acme/greet@v1\n"
    found = check_text(
        text, "wf.yml", extra=lambda wf, name: check_actions(wf, name, TABLE.__getitem__, set())
    )
    assert [(d.file, d.line, d.severity) for d in found] == [("wf.yml", 6, Severity.ERROR)]


@given(
    owner=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,10}", fullmatch=True),
    ref=st.from_regex(r"[A-Za-z0-9.]{1,10}", fullmatch=True),
)
def test_only_remote_actions_are_resolved(owner: str, ref: str) -> None:
    assert is_checked(f"{owner}/x@{ref}")
    assert is_checked(f"{owner}/x/sub/dir@{ref}")
    assert not is_checked(f"./{owner}")
    assert not is_checked(f"docker://{owner}:{ref}")
    assert not is_checked(f"actions/checkout@{ref}")
    assert not is_checked(f"{owner}/x@${{{{ inputs.{ref} }}}}")
