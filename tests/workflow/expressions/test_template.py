"""Table tests for strings containing ``${{ }}``."""

from __future__ import annotations

from typing import Any

import pytest

from vmrunner.workflow.expressions import (
    ExpressionSyntaxError,
    evaluate_template,
    find_expressions,
    parse_template,
)
from vmrunner.workflow.expressions.nodes import Node

CTX: dict[str, Any] = {"matrix": {"v": 3, "list": [1, 2], "flag": False}, "env": {"X": "x"}}


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("plain", []),
        ("${{ a }}", [(0, 8, " a ")]),
        ("x${{a}}y${{ b }}", [(1, 7, "a"), (8, 16, " b ")]),
        ("${{ '}}' }}", [(0, 11, " '}}' ")]),
        ("${{ 'it''s}}' }}", [(0, 16, " 'it''s}}' ")]),
        ("${{}}", [(0, 5, "")]),
        ("${{ a }}}", [(0, 8, " a ")]),
        ("$ {{ a }}", []),
    ],
)
def test_find_expressions(text: str, spans: list[tuple[int, int, str]]) -> None:
    assert find_expressions(text) == spans


@pytest.mark.parametrize("text", ["${{ a", "ok ${{ 'x }}", "${{ a }} ${{ b }"])
def test_unclosed(text: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match="The expression is not closed") as info:
        find_expressions(text)
    assert text[info.value.pos : info.value.pos + 3] == "${{"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no expressions", "no expressions"),
        ("${{ matrix.v }}", 3),
        ("${{ matrix.list }}", [1, 2]),
        ("${{ matrix.flag }}", False),
        (" ${{ matrix.flag }}", " false"),
        ("v${{ matrix.v }}-${{ env.x }}", "v3-x"),
        ("${{ matrix.list }}${{ matrix }}", "ArrayObject"),
        ("${{ matrix.nope }}!", "!"),
        ("${{ '${{ }}' }}", "${{ }}"),
    ],
)
def test_evaluate_template(text: str, expected: Any) -> None:
    assert evaluate_template(text, CTX) == expected


def test_syntax_error_positions_are_in_the_whole_text() -> None:
    text = "run: ${{ matrix.v == }}"
    with pytest.raises(ExpressionSyntaxError) as info:
        evaluate_template(text, CTX)
    assert "Unexpected end of expression: '=='" in str(info.value)
    assert text[info.value.pos : info.value.pos + 2] == "=="
    assert info.value.column == info.value.pos + 1


def test_all_expressions_are_parsed_before_any_is_evaluated() -> None:
    with pytest.raises(ExpressionSyntaxError, match="Unrecognized named-value: 'secrets'"):
        evaluate_template("${{ format('{') }} ${{ secrets.x }}", CTX)


def test_parse_template_pieces() -> None:
    pieces = parse_template("a${{ x }}b", allowed_contexts=["x"])
    assert pieces[0] == "a" and pieces[2] == "b" and isinstance(pieces[1], Node)
