"""Table tests for evaluation: indexing, filters, operators, contexts, limits."""

from __future__ import annotations

from typing import Any

import pytest

from vmrunner.workflow.expressions import (
    ExpressionError,
    ExpressionSyntaxError,
    evaluate,
    parse,
)
from vmrunner.workflow.expressions.nodes import Call, Literal, NamedValue, Not, Wildcard

SHARED: list[Any] = [1]
CTX: dict[str, Any] = {
    "github": {"event_name": "push", "ref": "refs/heads/main", "Event": {"number": 7}},
    "matrix": {"os": "ubuntu", "node": 18, "list": ["a", "b", "c"]},
    "steps": {"build": {"outputs": {"ok": "true"}}, "test": {"outputs": {"ok": "false"}}},
    "tup": ("x", ("y", "z")),
    "same": {"a": SHARED, "b": SHARED},
    "dup": {"Key": 1, "KEY": 2, "key": 3},
}


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("github.event_name == 'PUSH'", True),
        ("GITHUB.EVENT.NUMBER", 7),
        ("github['ref']", "refs/heads/main"),
        ("github.nope", None),
        ("github.nope.deeper", None),
        ("matrix.node == '18'", True),
        ("matrix.node >= 16 && matrix.node < 20", True),
        ("matrix.list[1]", "b"),
        ("matrix.list[1.9]", "b"),
        ("matrix.list['2']", "c"),
        ("matrix.list[3]", None),
        ("matrix.list.length", None),
        ("matrix.os[0]", None),
        ("steps.*.outputs.ok", ["true", "false"]),
        ("steps[*].outputs['ok']", ["true", "false"]),
        ("contains(steps.*.outputs.ok, 'false')", True),
        ("matrix.list.*[0]", []),
        ("matrix.*.*", ["a", "b", "c"]),
        ("(matrix.list.*)[0]", []),
        ("tup[1][0]", "y"),
        ("tup.*[1]", ["z"]),
        ("same.a == same.b", True),
        ("dup.key", 3),
        ("dup.kEy", 1),
        ("github.event_name == 'push' && 'yes' || 'no'", "yes"),
        ("github.event_name == 'pr' && 'yes' || 'no'", "no"),
        ("!github.nope", True),
        ("'abc'.length", None),
        ("null.x", None),
        ("null[format('{')]", None),
        ("null.*", []),
        ("fromJSON('[[1],[2]]').*[0]", [1, 2]),
    ],
)
def test_evaluate(src: str, expected: Any) -> None:
    assert evaluate(src, CTX) == expected


def test_short_circuit_skips_errors() -> None:
    assert evaluate("false && format('{')", {}) is False
    assert evaluate("'x' || format('{')", {}) == "x"
    with pytest.raises(ExpressionError):
        evaluate("true && format('{')", {})


def test_context_values_are_returned_as_is() -> None:
    assert evaluate("matrix", CTX) is CTX["matrix"]
    assert type(evaluate("matrix.list.*", CTX)) is list


def test_unknown_context_in_source_is_a_syntax_error() -> None:
    with pytest.raises(ExpressionSyntaxError, match="Unrecognized named-value: 'secrets'"):
        evaluate("secrets.token", CTX)


def test_unknown_context_in_a_tree_is_an_evaluation_error() -> None:
    with pytest.raises(ExpressionError, match="Unrecognized named-value: 'secrets'"):
        evaluate(parse("secrets.token"), CTX)


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        (Wildcard(), "cannot evaluate a Wildcard"),
        (Call("nope", ()), "Unrecognized function: 'nope'"),
        (Call("join", ()), "Wrong number of parameters"),
        (Call("case", (Literal(True), Literal(1))), "Wrong number of parameters"),
    ],
)
def test_hand_built_trees_are_checked(tree: Any, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        evaluate(tree, {})


def test_hand_built_trees_are_depth_limited() -> None:
    tree: Any = NamedValue("x")
    for _ in range(60):
        tree = Not(tree)
    with pytest.raises(ExpressionError, match="Exceeded max expression depth 50"):
        evaluate(tree, {"x": 1})


# About 400,000 characters (800 KB as GitHub counts memory): one fits in the 1 MiB budget.
BIG = "format('" + "{0}" * 40 + "', format('" + "{0}" * 100 + "', '" + "x" * 100 + "'))"


def test_memory_of_finished_operands_is_released() -> None:
    assert evaluate(" && ".join([f"!!{BIG}"] * 5), {}) is True
    assert len(evaluate(BIG, {})) == 400_000


@pytest.mark.parametrize("src", [f"startsWith({BIG}, {BIG})", f"{BIG} == {BIG}"])
def test_memory_of_live_operands_adds_up(src: str) -> None:
    with pytest.raises(ExpressionError, match="The maximum allowed memory size was exceeded"):
        evaluate(src, {})
