"""GitHub's template schema as vendored, and the reader that checks workflows against it
(its agreement with GitHub's parser at large is test_differential.py's)."""

from __future__ import annotations

import pytest

from vmrunner.workflow.check import check_text
from vmrunner.workflow.loader import load_text
from vmrunner.workflow.schema.template import definitions, read_template, schema_text
from workflow.github_parser import NPM_SCHEMA, PACKAGE

JOB = "on: push\njobs:\n  b:\n    runs-on: x\n    steps:\n      - run: a\n"


def test_vendored_schema_is_the_npm_packages_copy() -> None:
    assert schema_text() == NPM_SCHEMA.read_text("utf-8")


def test_vendored_licence_is_the_npm_packages() -> None:
    from importlib import resources

    here = resources.files("vmrunner.workflow.schema").joinpath("LICENSE-workflow-v1.0")
    assert (PACKAGE / "LICENSE").read_text("utf-8") in here.read_text("utf-8")


def test_every_reference_resolves() -> None:
    defs = definitions()
    for d in defs.values():
        named = [*d.one_of, *(p.type for p in d.properties.values())]
        named += [n for n in (d.loose_key, d.loose_value) if n]
        if d.kind == "sequence":
            named.append(d.item_type)
        assert all(n in defs for n in named), d.name


def problems(text: str) -> list[tuple[int, int, str]]:
    return [(p.pos.line, p.pos.col, p.message) for p in read_template(load_text(text))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # newer top-level keys and short forms GitHub accepts
        ("description: d\n" + JOB, []),
        (JOB.replace("runs-on: x", "runs-on:\n      group: g"), []),
        (JOB.replace("runs-on: x", "runs-on: x\n    services:\n      db: postgres"), []),
        (JOB.replace("runs-on: x", "runs-on: x\n    container: node:20"), []),
        (
            JOB.replace("runs-on: x", "runs-on: x\n    services:\n      db: ''"),
            [(6, 11, "Unexpected value ''")],
        ),
        # scalars stand for strings, not the other way round
        (JOB + "name: 1\n", []),
        (
            JOB.replace("runs-on: x", "runs-on: x\n    timeout-minutes: '5'"),
            [(5, 22, "Unexpected value '5'")],
        ),
        # expressions only where the schema gives a context
        (JOB.replace("runs-on: x", "runs-on: x\n    timeout-minutes: ${{ 1 }}x"), []),
        (
            JOB.replace("run: a", "run: a\n        id: ${{ 1 }}"),
            [(7, 13, "A template expression is not allowed in this context")],
        ),
        # the insert directive: a key in a mapping that allows expressions, not a value
        (
            JOB.replace(
                "runs-on: x", "runs-on: x\n    env:\n      ${{ insert }}: ${{ fromJSON('{}') }}"
            ),
            [],
        ),
        (
            JOB.replace("run: a", "run: a\n        name: ${{ insert }}"),
            [(7, 15, "Unexpected value '${{ insert }}'")],
        ),
        (
            JOB.replace("run: a", "${{ insert }}: {}"),
            [
                (6, 9, "A template expression is not allowed in this context"),
                (6, 9, "There's not enough info"),
            ],
        ),
        # misspellings: a hint, and the key meant is not also missing
        (
            JOB.replace("runs-on", "runs-onn"),
            [(4, 5, "Unexpected value 'runs-onn' (did you mean 'runs-on'?)")],
        ),
        (JOB.replace("jobs:", "jobz:"), [(2, 1, "Unexpected value 'jobz' (did you mean 'jobs'?)")]),
        (JOB.replace("runs-on: x", "runs-on: x\n    zzz: 1"), [(5, 5, "Unexpected value 'zzz'")]),
    ],
)
def test_reader(text: str, expected: list[tuple[int, int, str]]) -> None:
    found = problems(text)
    assert [f[:2] for f in found] == [e[:2] for e in expected], found
    for (_, _, message), (_, _, wanted) in zip(found, expected, strict=True):
        assert message.startswith(wanted), message


def test_a_misspelling_does_not_hide_its_neighbours() -> None:
    """Errors in the valid keys beside a misspelled one are still found, and nothing
    else is reported for the misspelling."""
    text = JOB.replace("runs-on: x", "runs-onn: x\n    timeout-minutes: soon")
    assert [m for _, _, m in problems(text)] == [
        "Unexpected value 'runs-onn' (did you mean 'runs-on'?)",
        "Unexpected value 'soon'",
    ]


def test_an_array_expression_is_an_item_of_a_matrix_vector() -> None:
    """GitHub's parser accepts ``- ${{ fromJSON('[...]') }}`` in a matrix vector (the
    runner splices the array in); so does check."""
    text = JOB.replace(
        "runs-on: x",
        "runs-on: x\n    strategy:\n      matrix:\n        os:\n          - ${{ fromJSON('[\"a\"]') }}\n          - b",
    )
    assert check_text(text) == []
