"""Table tests for GitHub's semantic rules (ids, needs, runners, containers, expressions)."""

from __future__ import annotations

import pytest

from vmrunner.workflow.check import check_text
from vmrunner.workflow.validate import CONTEXT_RULES, id_problem, rule_for


def problems(text: str) -> list[tuple[int, int, str]]:
    return [(d.line, d.col, d.message) for d in check_text(text, "wf.yml")]


def job(body: str, *, steps: str = "      - run: echo hi\n", head: str = "on: push\n") -> str:
    """A workflow with one job ``build`` (line 3); ``body`` lines start at line 4."""
    return f"{head}jobs:\n  build:\n{body}    runs-on: ubuntu-latest\n    steps:\n{steps}"


def step(body: str) -> str:
    """A workflow whose single step starts at line 6 with ``body`` (indented 8)."""
    return job("", steps=f"      - {body.lstrip()}")


# ---- ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ident", "why"),
    [
        ("build", None),
        ("_", None),
        ("_a", None),
        ("a__", None),
        ("my-job0", None),
        ("myjob-", None),
        ("a" * 99, None),
        ("a" * 100, "IDs may only contain"),
        ("", "IDs may only contain"),
        ("0job", "IDs may only contain"),
        ("-job", "IDs may only contain"),
        ("job$", "IDs may only contain"),
        ("j.b", "IDs may only contain"),
        ("__", "IDs starting with '__' are reserved"),
        ("__a", "IDs starting with '__' are reserved"),
    ],
)
def test_id_rules(ident: str, why: str | None) -> None:
    problem = id_problem(ident)
    assert (problem is None) == (why is None)
    if why is not None:
        assert problem is not None and why in problem


def test_bad_job_id_is_reported_at_the_key() -> None:
    text = "on: push\njobs:\n  __x:\n    runs-on: a\n    steps:\n      - run: b\n"
    assert problems(text) == [
        (3, 3, "The identifier '__x' is invalid. IDs starting with '__' are reserved.")
    ]


def test_step_ids_duplicate_case_insensitively_within_a_job_only() -> None:
    steps = "      - id: one\n        run: a\n      - id: ONE\n        run: b\n"
    text = job("", steps=steps) + "  other:\n    runs-on: x\n    steps:\n" + steps
    assert problems(text) == [
        (8, 13, "The identifier 'ONE' may not be used more than once within the same scope."),
        (15, 13, "The identifier 'ONE' may not be used more than once within the same scope."),
    ]


def test_step_id_with_an_expression_is_not_checked_as_an_id() -> None:
    """GitHub allows no expression in a step id (the schema says so, once); the id rule
    does not add an "invalid identifier" of its own."""
    found = problems(step("id: ${{ matrix.x }}\n        run: a\n"))
    assert [f[2] for f in found] == ["A template expression is not allowed in this context"]


# ---- needs -------------------------------------------------------------------------

NEEDS = """\
on: push
jobs:
  a:
    runs-on: x
    steps: [{run: a}]
  b:
    needs: [A, c]
    runs-on: x
    steps: [{run: a}]
  c:
    needs: b
    runs-on: x
    steps: [{run: a}]
  d:
    needs: nope
    runs-on: x
    steps: [{run: a}]
  e:
    needs: e
    runs-on: x
    steps: [{run: a}]
"""


def test_needs_unknown_cycles_and_self_loops() -> None:
    assert problems(NEEDS) == [
        (7, 16, "Job 'b' depends on job 'c' which creates a cycle in the dependency graph."),
        (11, 12, "Job 'c' depends on job 'b' which creates a cycle in the dependency graph."),
        (15, 12, "Job 'd' depends on unknown job 'nope'."),
        (19, 12, "Job 'e' depends on job 'e' which creates a cycle in the dependency graph."),
    ]


def test_every_job_having_needs_means_no_first_job() -> None:
    text = "on: push\njobs:\n  a:\n    needs: b\n    uses: o/r/.github/workflows/w.yml@v1\n"
    text += "  b:\n    needs: a\n    uses: o/r/.github/workflows/w.yml@v1\n"
    found = problems(text)
    assert (
        3,
        3,
        "The workflow must contain at least one job with no dependencies.",
    ) in found
    assert len(found) == 3


# ---- runners and containers --------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ("my-group", None),
        ("organization/my-group", None),
        ("enterprise/my-group", None),
        ("${{ inputs.group }}", None),
        ("ent/my-group", "Please use 'organization/' or 'enterprise/' prefix"),
        ("ent/org/g", "Please use 'organization/' or 'enterprise/' prefix"),
        ("organization/", "Invalid runs-on group name 'organization/'."),
        ("organization/a/b", "Invalid runs-on group name 'organization/a/b'."),
    ],
)
def test_runner_groups(group: str, message: str | None) -> None:
    text = f"on: push\njobs:\n  b:\n    runs-on:\n      group: {group}\n    steps: [{{run: a}}]\n"
    found = problems(text)
    if message is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0][:2] == (5, 14) and message in found[0][2]


@pytest.mark.parametrize(
    ("container", "line", "col"),
    [
        ("    container: ''\n", 4, 16),
        ("    container:\n      image: ' '\n", 5, 14),
        ("    container:\n      options: o\n", 5, 7),
        ("    services:\n      db:\n        image: ' '\n", 6, 16),
    ],
)
def test_empty_container_images(container: str, line: int, col: int) -> None:
    assert problems(job(container)) == [(line, col, "Container image cannot be empty")]


@pytest.mark.parametrize(
    ("matrix", "expected"),
    [
        ("{os: [a], node: []}", [(5, 31, "Matrix vector 'node' does not contain any values")]),
        (
            "{os: [a], include: []}",
            [(5, 34, "Matrix vector 'include' does not contain any values")],
        ),
        ("{os: [a], include: [{os: b}]}", []),
        ("${{ fromJSON(needs.a.outputs.m) }}", []),
    ],
)
def test_matrix_vectors(matrix: str, expected: list[tuple[int, int, str]]) -> None:
    assert problems(job(f"    strategy:\n      matrix: {matrix}\n")) == expected


# ---- expressions: syntax -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("echo ${{ }}", "An expression was expected"),
        ("echo ${{ github.ref", "The expression is not closed."),
        ("${{ contains('a', 'b' }}", "Unexpected end of expression: ''b''. Located at position"),
        ("${{ 1 == }}", "Unexpected end of expression"),
        ("${{ nope(1) }}", "Unrecognized function: 'nope'"),
        ("${{ github.ref }} and ${{ github.sha }}", None),
        ("${{ format('}}{0}', github.ref) }}", None),
        ("echo '${{'", "The expression is not closed."),
        ("plain text", None),
    ],
)
def test_expression_syntax_in_a_run_step(value: str, message: str | None) -> None:
    """An error in an expression is at its ``${{`` (past the quote at column 14); one
    that is not closed is the value's."""
    found = problems(step(f'run: "{value}"\n'))
    if message is None:
        assert found == []
    else:
        col = 14 if "not closed" in message else 15 + value.index("${{")
        assert len(found) == 1 and found[0][:2] == (6, col) and message in found[0][2]


def test_expression_length_limit() -> None:
    long = "echo ${{ github.sha }} " + "x" * 21000
    assert problems(step(f"run: {long}\n")) == [(6, 14, "Exceeded max expression length 21000")]


def test_insert_directive_only_as_a_whole_value() -> None:
    body = "    env:\n      A: 'a ${{ insert }}'\n      ${{ insert }}: ${{ github.env }}\n"
    found = problems(job(body))
    assert [f[:2] for f in found] == [(5, 10)]
    assert "The directive 'insert' is not allowed in this context" in found[0][2]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("github.event_name == 'push'", None),
        ("${{ github.event_name == 'push' }}", None),
        ("success() && !cancelled()", None),
        ("false || ${{ true }}", None),
        ("", None),
        ("github.event_name ==", "Unexpected end of expression"),
        ("matrix.os == 'x'", "Unrecognized named-value: 'matrix'"),
        ("hashFiles('x') != ''", "Unrecognized function: 'hashFiles'"),
    ],
)
def test_job_if_is_an_expression_without_braces(condition: str, message: str | None) -> None:
    found = problems(job(f'    if: "{condition}"\n'))
    if message is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0][:2] == (4, 9) and message in found[0][2]


# ---- expressions: where each context and function is available --------------------


def workflow_with(path_yaml: str) -> str:
    return "on: push\n" + path_yaml


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # workflow level
        ("run-name: ${{ github.actor }}\n" + job(""), None),
        ("run-name: ${{ secrets.X }}\n" + job(""), "Unrecognized named-value: 'secrets'"),
        ("env:\n  A: ${{ secrets.X }}\n" + job(""), None),
        ("env:\n  A: ${{ env.B }}\n" + job(""), "Unrecognized named-value: 'env'"),
        ("concurrency: ${{ github.ref }}\n" + job(""), None),
        ("concurrency: ${{ needs.a }}\n" + job(""), "Unrecognized named-value: 'needs'"),
        # job level
        (job("    env:\n      A: ${{ secrets.X }}\n"), None),
        (job("    env:\n      A: ${{ steps.x.outputs.y }}\n"), "named-value: 'steps'"),
        (job("    name: ${{ matrix.os }}\n"), None),
        (job("    name: ${{ runner.os }}\n"), "Unrecognized named-value: 'runner'"),
        (job("    timeout-minutes: ${{ matrix.t }}\n"), None),
        (job("    continue-on-error: ${{ env.X }}\n"), "Unrecognized named-value: 'env'"),
        (job("    outputs:\n      o: ${{ steps.a.outputs.b }}\n"), None),
        (job("    outputs:\n      o: ${{ always() }}\n"), "Unrecognized function: 'always'"),
        (job("    strategy:\n      matrix: ${{ fromJSON(needs.a.outputs.m) }}\n"), None),
        (job("    strategy:\n      max-parallel: ${{ matrix.n }}\n"), "named-value: 'matrix'"),
        (job("    environment:\n      name: e\n      url: ${{ steps.d.outputs.url }}\n"), None),
        (job("    environment: ${{ steps.d.outputs.e }}\n"), "named-value: 'steps'"),
        (job("    container:\n      image: ${{ matrix.image }}\n"), None),
        (job("    container:\n      image: ${{ env.IMAGE }}\n"), "named-value: 'env'"),
        (job("    container:\n      image: x\n      env:\n        A: ${{ runner.temp }}\n"), None),
        (
            job(
                "    services:\n      db:\n        image: x\n        env:\n          A: ${{ job.x }}\n"
            ),
            None,
        ),
        (job("    services:\n      db:\n        image: ${{ job.x }}\n"), "named-value: 'job'"),
        (
            job(
                "    services:\n      db:\n        image: x\n        credentials:\n          password: ${{ secrets.P }}\n"
            ),
            None,
        ),
        # step level
        (step("run: ${{ secrets.X }} ${{ steps.a.outputs.b }} ${{ runner.os }}\n"), None),
        (step("run: ${{ hashFiles('**/x') }}\n"), None),
        (step("run: ${{ success() }}\n"), "Unrecognized function: 'success'"),
        (step("if: secrets.X != ''\n        run: a\n"), "Unrecognized named-value: 'secrets'"),
        (step("if: failure() && hashFiles('x') != ''\n        run: a\n"), None),
        (step("uses: a/b@v1\n        with:\n          x: ${{ env.A }}\n"), None),
        (step("run: a\n        working-directory: ${{ nope.x }}\n"), "named-value: 'nope'"),
        # reusable-workflow calls
        (
            "on: push\njobs:\n  c:\n    uses: o/r/.github/workflows/w.yml@v1\n"
            "    with:\n      x: ${{ matrix.x }}\n    secrets:\n      s: ${{ secrets.S }}\n",
            None,
        ),
        (
            "on: push\njobs:\n  c:\n    uses: o/r/.github/workflows/w.yml@v1\n"
            "    with:\n      x: ${{ secrets.S }}\n",
            "Unrecognized named-value: 'secrets'",
        ),
        # workflow_call declarations
        (
            "on:\n  workflow_call:\n    outputs:\n      o:\n        value: ${{ jobs.b.outputs.o }}\n"
            "jobs:\n  b:\n    runs-on: x\n    steps: [{run: a}]\n",
            None,
        ),
        # keys GitHub never evaluates are not parsed at all
        # not evaluated here, but GitHub's parser still refuses an unclosed expression
        (
            "on:\n  push:\n    branches: ['${{ not closed']\n" + job("").split("\n", 1)[1],
            "The expression is not closed",
        ),
    ],
)
def test_context_availability(text: str, message: str | None) -> None:
    found = problems(text)
    if message is None:
        assert found == []
    else:
        assert len(found) == 1 and message in found[0][2], found


def test_context_rules_are_found_by_longest_path() -> None:
    step_if = rule_for(("jobs", "b", "steps", 0, "if"))
    step_run = rule_for(("jobs", "b", "steps", 0, "run"))
    assert step_if is not None and step_run is not None
    assert "secrets" in step_run.contexts and "secrets" not in step_if.contexts
    assert rule_for(("on", "push", "branches", 0)) is None
    assert len({r.path for r in CONTEXT_RULES}) == len(CONTEXT_RULES)
