"""The jobs DAG, per-job scheduling and GitHub's skip rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.errors import UserInputError
from vmrunner.workflow.expressions import ExpressionSyntaxError, parse
from vmrunner.workflow.plan import (
    JobGraph,
    NeedsStatus,
    PlanError,
    bind_status_functions,
    implicit_success,
    job_should_run,
    needs_context,
    needs_satisfied,
    needs_status,
    topological_order,
    uses_status_function,
)

DIAMOND = {
    "build": None,
    "lint": [],
    "test": ["build"],
    "docs": "build",
    "deploy": ["test", "docs", "lint"],
}


def test_from_needs_normalises() -> None:
    graph = JobGraph.from_needs({"a": None, "b": "a", "c": ["a", "b", "a"]})
    assert graph.jobs == ("a", "b", "c")
    assert graph.needs == {"a": (), "b": ("a",), "c": ("a", "b")}
    assert graph.dependents("a") == ("b", "c")
    assert graph.ancestors("c") == {"a", "b"}
    assert graph.ancestors("a") == frozenset()


@pytest.mark.parametrize(
    ("needs", "message"),
    [
        ({"a": ["x"]}, "Job 'a' depends on unknown job 'x'"),
        ({"a": ["a"]}, "cycle: a -> a"),
        ({"a": ["b"], "b": ["a"]}, "cycle: a -> b -> a"),
        ({"z": None, "a": ["c"], "b": ["a"], "c": ["b"]}, "cycle: a -> c -> b -> a"),
        ({"a": None, "b": ["a", "d"], "c": ["b"], "d": ["c"]}, "cycle: b -> d -> c -> b"),
        ({"a": [1]}, "needs must be job ids"),
    ],
)
def test_from_needs_errors(needs: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError, match=message) as info:
        JobGraph.from_needs(needs)
    assert isinstance(info.value, UserInputError)


@pytest.mark.parametrize(
    ("done", "running", "expected"),
    [
        ({}, (), ("build", "lint")),
        ({}, ("build",), ("lint",)),
        ({"build": "success"}, ("lint",), ("test", "docs")),
        # per-job scheduling: test is ready while lint still runs, no stage barrier
        ({"build": "failure"}, (), ("lint", "test", "docs")),
        ({"build": "success", "test": "success", "docs": "skipped"}, ("lint",), ()),
        (
            {"build": "success", "test": "success", "docs": "skipped", "lint": "cancelled"},
            (),
            ("deploy",),
        ),
        (dict.fromkeys(DIAMOND, "success"), (), ()),
    ],
)
def test_ready(done: dict[str, str], running: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert JobGraph.from_needs(DIAMOND).ready(done, running) == expected


def test_topological_order() -> None:
    graph = JobGraph.from_needs(DIAMOND)
    assert topological_order(graph) == ("build", "lint", "test", "docs", "deploy")
    assert JobGraph.from_needs({"c": ["b"], "b": ["a"], "a": None}).topological_order() == (
        "a",
        "b",
        "c",
    )
    assert JobGraph.from_needs({}).topological_order() == ()


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """Random DAGs: each job needs only jobs with a smaller index, declared in any order."""
    count = draw(st.integers(0, 12))
    names = [f"j{i}" for i in range(count)]
    needs = {
        name: draw(st.lists(st.sampled_from(names[:i]), max_size=4)) if i else []
        for i, name in enumerate(names)
    }
    order = draw(st.permutations(names))
    return {name: needs[name] for name in order}


@given(
    dags(),
    st.randoms(use_true_random=False),
    st.lists(st.sampled_from(["success", "failure", "skipped"])),
)
def test_ready_runs_every_job_once_after_its_needs(
    needs: dict[str, list[str]], rng: Any, results: list[str]
) -> None:
    graph = JobGraph.from_needs(needs)
    done: dict[str, str] = {}
    running: list[str] = []
    started: list[str] = []
    while len(done) < len(needs):
        for job in graph.ready(done, running):
            assert all(dep in done for dep in needs[job])
            running.append(job)
            started.append(job)
        assert running, "deadlock"
        finished = running.pop(rng.randrange(len(running)))  # finish in any order
        done[finished] = results[len(done) % len(results)] if results else "success"
    assert sorted(started) == sorted(needs)
    assert len(started) == len(set(started))
    order = graph.topological_order()
    assert sorted(order) == sorted(needs)
    for job in order:
        assert all(order.index(dep) < order.index(job) for dep in needs[job])


@given(dags())
def test_ancestors_are_transitive_needs(needs: dict[str, list[str]]) -> None:
    graph = JobGraph.from_needs(needs)
    for job in needs:
        expected = set(needs[job]).union(*(graph.ancestors(d) for d in needs[job]))
        assert graph.ancestors(job) == expected
        assert job not in graph.ancestors(job)


@pytest.mark.parametrize(
    ("if_expr", "expected"),
    [
        (None, "success()"),
        ("", "success()"),
        ("  ", "success()"),
        ("github.ref == 'refs/heads/main'", "success() && (github.ref == 'refs/heads/main')"),
        (
            "${{ github.ref == 'refs/heads/main' }}",
            "success() && (github.ref == 'refs/heads/main')",
        ),
        ("always()", "always()"),
        ("${{ always() }}", "always()"),
        (
            "${{ !cancelled() && needs.a.result == 'skipped' }}",
            "!cancelled() && needs.a.result == 'skipped'",
        ),
        ("failure() || github.event_name == 'push'", "failure() || github.event_name == 'push'"),
        ("SUCCESS()", "SUCCESS()"),
        ("!failure()", "!failure()"),
        ("github.success", "success() && (github.success)"),
        ("a || b", "success() && (a || b)"),
    ],
)
def test_implicit_success(if_expr: str | None, expected: str) -> None:
    assert implicit_success(if_expr) == expected


def test_bad_if_is_a_syntax_error() -> None:
    with pytest.raises(ExpressionSyntaxError):
        implicit_success("a ==")
    with pytest.raises(ExpressionSyntaxError):
        uses_status_function("${{ a")


@pytest.mark.parametrize(
    ("results", "cancelled", "expected"),
    [
        ([], False, NeedsStatus(True, False, False)),
        (["success", "success"], False, NeedsStatus(True, False, False)),
        (["success", "skipped"], False, NeedsStatus(False, False, False)),
        (["success", "failure"], False, NeedsStatus(False, True, False)),
        (["cancelled"], False, NeedsStatus(False, False, False)),
        (["success"], True, NeedsStatus(False, False, True)),
        (["failure"], True, NeedsStatus(False, True, True)),
    ],
)
def test_needs_status(results: list[str], cancelled: bool, expected: NeedsStatus) -> None:
    assert NeedsStatus.of(results, run_cancelled=cancelled) == expected


def test_needs_status_rejects_unknown_results() -> None:
    with pytest.raises(ValueError, match="unknown job result"):
        NeedsStatus.of(["passed"])


CONTEXTS: dict[str, Any] = {
    "github": {"ref": "refs/heads/main"},
    "needs": {"a": {"result": "skipped"}},
}

# (if, ancestor results, run cancelled, runs?)
SKIP_RULE: list[tuple[str | None, list[str], bool, bool]] = [
    (None, [], False, True),
    (None, ["success"], False, True),
    (None, ["failure"], False, False),
    (None, ["skipped"], False, False),
    (None, ["cancelled"], False, False),
    (None, ["success"], True, False),
    ("github.ref == 'refs/heads/main'", ["success"], False, True),
    ("github.ref == 'refs/heads/main'", ["failure"], False, False),
    ("github.ref == 'refs/heads/dev'", ["success"], False, False),
    ("success()", ["skipped"], False, False),
    ("always()", ["failure"], False, True),
    ("always()", ["success"], True, True),
    ("${{ always() }}", ["skipped"], False, True),
    ("failure()", ["success", "failure"], False, True),
    ("failure()", ["success", "skipped"], False, False),
    ("failure()", ["success"], False, False),
    ("cancelled()", ["success"], True, True),
    ("cancelled()", ["success"], False, False),
    ("!failure() && !cancelled()", ["success", "skipped"], False, True),
    ("!failure() && !cancelled()", ["failure"], False, False),
    ("!cancelled() && needs.a.result == 'skipped'", ["skipped"], False, True),
    ("success() || github.ref == 'refs/heads/main'", ["skipped"], False, True),
]


@pytest.mark.parametrize(("if_expr", "results", "cancelled", "runs"), SKIP_RULE)
def test_job_should_run(
    if_expr: str | None, results: list[str], cancelled: bool, runs: bool
) -> None:
    status = NeedsStatus.of(results, run_cancelled=cancelled)
    assert job_should_run(if_expr, CONTEXTS, status) is runs
    if not needs_satisfied(results, if_expr):
        assert not runs  # the shortcut never skips a job that would run


@pytest.mark.parametrize(
    ("results", "if_expr", "satisfied"),
    [
        (["success"], None, True),
        (["failure"], None, False),
        (["skipped"], "github.ref == 'x'", False),
        (["skipped"], "always()", True),
        (["cancelled"], "${{ !cancelled() }}", True),
        ([], None, True),
    ],
)
def test_needs_satisfied(results: list[str], if_expr: str | None, satisfied: bool) -> None:
    assert needs_satisfied(results, if_expr) is satisfied


def test_status_propagates_through_the_chain() -> None:
    # a fails; b needs a and runs with always(); c needs b: c is still skipped by default
    graph = JobGraph.from_needs({"a": None, "b": ["a"], "c": ["b"]})
    results = {"a": "failure", "b": "success"}
    status = needs_status(graph, "c", results)
    assert status == NeedsStatus(success=False, failure=True, cancelled=False)
    assert not job_should_run(None, {}, status)
    assert job_should_run("failure()", {}, status)


def test_bind_status_functions_replaces_only_calls() -> None:
    node = parse("always() && (Success() || format('{0}', failure()))")
    bound = bind_status_functions(node, NeedsStatus(False, True, False))
    assert bound == parse("true && (false || format('{0}', true))")


def test_needs_context() -> None:
    graph = JobGraph.from_needs(DIAMOND)
    results = {"test": "success", "docs": "skipped", "lint": "failure"}
    context = needs_context(graph, "deploy", results, {"test": {"version": "1.2"}})
    assert context == {
        "test": {"result": "success", "outputs": {"version": "1.2"}},
        "docs": {"result": "skipped", "outputs": {}},
        "lint": {"result": "failure", "outputs": {}},
    }
