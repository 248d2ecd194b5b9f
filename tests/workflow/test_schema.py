"""The JSON-schema stage: GitHub-like messages at the right node, the overlays, and the
fast path agreeing with jsonschema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datafiles import corpus_files, parser_case_files
from vmrunner.workflow.check import check_text
from vmrunner.workflow.loader import YamlError, load_text
from vmrunner.workflow.schema import (
    fast_is_valid,
    load_schema,
    to_data,
    validate_schema,
)
from vmrunner.workflow.schema.explain import validator as _validator


def schema_problems(text: str) -> list[tuple[int, int, str]]:
    return [(p.pos.line, p.pos.col, p.message) for p in validate_schema(load_text(text))]


def all_problems(text: str) -> list[tuple[int, int, str]]:
    """Schema and semantic problems together (some rules moved from the old JSON schema
    to the semantic checks when GitHub's template schema became the source)."""
    return [(d.line, d.col, d.message) for d in check_text(text)]


JOB = "on: push\njobs:\n  b:\n    runs-on: x\n    steps:\n      - run: a\n"
NOT_ENOUGH = "There's not enough info to determine what you meant. Add one of these properties: "


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (JOB, []),
        (
            "on: push\njobs: {}\n",
            [(2, 7, "The workflow must contain at least one job with no dependencies.")],
        ),
        ("on: push\n", [(1, 1, "Required property is missing: jobs")]),
        (
            "jobs:\n  b:\n    uses: o/r/.github/workflows/w.yml@v1\n",
            [(1, 1, "Required property is missing: on")],
        ),
        ("- a\n", [(1, 1, "A sequence was not expected")]),
        (JOB + "name:\n  - x\n", [(8, 3, "A sequence was not expected")]),
        (
            JOB.replace("run: a", "runn: a"),
            [(6, 9, "Unexpected value 'runn' (did you mean 'run'?)")],
        ),
        (
            JOB.replace("run: a", "nam: a"),
            [(6, 9, "Unexpected value 'nam' (did you mean 'name'?)")],
        ),
        (JOB.replace("run: a", "zzz: a"), [(6, 9, "Unexpected value 'zzz'"), (6, 9, NOT_ENOUGH)]),
        (JOB.replace("run: a", "run: a\n        uses: b@v1"), [(7, 9, "Unexpected value 'uses'")]),
        (
            JOB.replace("run: a", "uses: a@v1\n        working-directory: d"),
            [(7, 9, "Unexpected value 'working-directory'")],
        ),
        (JOB + "permissions:\n  contents: banana\n", [(8, 13, "Unexpected value 'banana'")]),
        (JOB + "permissions: banana\n", [(7, 14, "Unexpected value 'banana'")]),
        (
            "on:\n  push:\n    branches: [a]\n    branches-ignore: [b]\n" + JOB[9:],
            [(4, 5, "'branches' and 'branches-ignore' cannot be used together")],
        ),
        ("on: pushh\n" + JOB[9:], [(1, 5, "Unexpected value 'pushh'")]),
        (
            JOB.replace("runs-on: x", "runs-on: x\n    timeout-minutes: soon"),
            [(5, 22, "Unexpected value 'soon'")],
        ),
        (
            "on: push\njobs:\n  c:\n    uses: o/r/.github/workflows/w.yml@v1\n    secrets: inhrit\n",
            [(5, 14, "Unexpected value 'inhrit'")],
        ),
        (
            "on: push\njobs:\n  c:\n    uses: o/r/.github/workflows/w.yml@v1\n    steps: []\n",
            [(5, 5, "Unexpected value 'steps'")],
        ),
        (
            "on: push\njobs:\n  c:\n    uses: not-a-workflow\n",
            [(4, 11, "Invalid workflow reference 'not-a-workflow'")],
        ),
        (JOB + "env:\n  A: [1]\n", [(8, 6, "A sequence was not expected")]),
        (
            JOB.replace("runs-on: x", "runs-onn: x"),
            [(4, 5, "Unexpected value 'runs-onn' (did you mean 'runs-on'?)")],
        ),
        (
            JOB.replace(
                "runs-on: x", "runs-on: x\n    env:\n      ${{ insert }}: ${{ fromJSON('{}') }}"
            ),
            [],
        ),
        (
            JOB.replace("run: a", "id: ${{ x }}\n        run: a"),
            [
                (6, 13, "A template expression is not allowed in this context"),
                (6, 13, "Unrecognized named-value: 'x'"),
            ],
        ),
    ],
)
def test_messages_and_positions(text: str, expected: list[tuple[int, int, str]]) -> None:
    """GitHub's messages (from its parser), at its positions; a misspelled key gets a
    hint and does not also make the key it meant "missing"."""
    found = all_problems(text)
    assert [f[:2] for f in found] == [e[:2] for e in expected], found
    for (_, _, message), (_, _, wanted) in zip(found, expected, strict=True):
        assert message.startswith(wanted), message


@pytest.mark.parametrize(
    "text",
    [
        # scalars stand for strings, as GitHub converts them
        JOB + "name: 1\n",
        JOB + "env:\n  A: ~\n  B: 3.10\n  C: true\n",
        JOB.replace("runs-on: x", "runs-on: 3.10"),
        # overlays: where GitHub accepts what SchemaStore does not
        JOB.replace("runs-on: x", "runs-on: x\n    strategy:\n      fail-fast: false"),
        JOB.replace("runs-on: x", "runs-on: x\n    strategy:\n      matrix:\n        a: [~, 1]"),
        JOB.replace("runs-on: x", "runs-on: x\n    cancel-timeout-minutes: 5"),
        JOB.replace(
            "runs-on: x",
            "runs-on: x\n    snapshot:\n      image-name: i\n      version: 1.*\n      if: true",
        ),
        "on:\n  image_version:\n    names: [a]\n" + JOB[9:],
        "on:\n  workflow_dispatch:\n    unknown: 1\n    inputs:\n      a:\n      b:\n        description: d\n"
        + JOB[9:],
        "on:\n  workflow_call:\n    secrets:\n      s:\n" + JOB[9:],
    ],
)
def test_accepted_as_github_accepts(text: str) -> None:
    assert schema_problems(text) == []


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # keywords beside $ref count (draft-07 would ignore them)
        ("on:\n  issues:\n    types: [openedd]\n" + JOB[9:], 3),
        ("on:\n  workflow_dispatch:\n    inputs:\n      a:\n        typo: 1\n" + JOB[9:], 5),
        # container credentials have two keys only
        (
            JOB.replace(
                "runs-on: x",
                "runs-on: x\n    container:\n      image: i\n      credentials:\n        user: u",
            ),
            8,
        ),
    ],
)
def test_rejected_as_github_rejects(text: str, line: int) -> None:
    assert [p[0] for p in schema_problems(text)] == [line]


def test_schema_comes_from_the_check_jsonschema_wheel() -> None:
    schema = load_schema()
    assert "jobs" in schema["properties"]
    assert "oneOf" not in json.dumps(schema["properties"])  # only under `step`


# ---- the fast path agrees with jsonschema -------------------------------------------


def _agree(data: Any) -> None:
    slow = not any(True for _ in _validator().iter_errors(data))
    assert fast_is_valid(data) == slow, json.dumps(data)[:500]


def _recorded_texts() -> list[str]:
    """The corpus workflows, and the workflow document of every parser case."""
    texts = [path.read_text("utf-8") for path in corpus_files()]
    texts += [path.read_text("utf-8").split("\n---\n")[1] for path in parser_case_files()]
    return texts


def test_fast_path_agrees_on_recorded_workflows() -> None:
    texts = _recorded_texts()
    assert len(texts) > 200  # the corpus and the parser cases, read from tests/data
    for text in texts:
        try:
            _agree(to_data(load_text(text)))
        except YamlError:
            continue  # bad YAML is not what this tests


KEYS = [
    "on", "jobs", "name", "runs-on", "steps", "uses", "run", "with", "env", "needs", "if",
    "strategy", "matrix", "include", "exclude", "permissions", "contents", "secrets",
    "workflow_call", "workflow_dispatch", "inputs", "push", "branches", "branches-ignore",
    "container", "image", "services", "outputs", "concurrency", "group", "defaults", "shell",
    "id", "b", "types", "schedule", "cron", "timeout-minutes", "type", "required", "value",
    "working-directory", "credentials", "environment", "url",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 400),
    st.floats(allow_nan=False),
    st.sampled_from(
        [
            "${{ x }}",
            "read",
            "write",
            "x",
            "inherit",
            "string",
            "o/r/.github/workflows/w.yml@v1",
            "",
        ]
    ),
)
TREES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(KEYS), TREES, max_size=4))
def test_fast_path_agrees_on_generated_trees(data: dict[str, Any]) -> None:
    _agree(data)
