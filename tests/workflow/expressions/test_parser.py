"""Table tests for the parser: tree shapes, precedence, errors with positions, limits."""

from __future__ import annotations

import pytest

from vmrunner.errors import UserInputError
from vmrunner.workflow.expressions import (
    ExpressionError,
    ExpressionSyntaxError,
    depth,
    parse,
    referenced_contexts,
    referenced_functions,
    unparse,
)
from vmrunner.workflow.expressions.nodes import (
    And,
    Call,
    Compare,
    Index,
    Literal,
    NamedValue,
    Not,
    Or,
    Wildcard,
)

a, b, c = NamedValue("a"), NamedValue("b"), NamedValue("c")


@pytest.mark.parametrize(
    ("src", "tree"),
    [
        ("", Literal(None)),
        ("   ", Literal(None)),
        ("a", a),
        ("a.b", Index(a, Literal("b"), dotted=True)),
        ("a['b']", Index(a, Literal("b"))),
        ("a[0]", Index(a, Literal(0.0))),
        ("a.*", Index(a, Wildcard(), dotted=True)),
        ("a[*]", Index(a, Wildcard())),
        ("a.*.b", Index(Index(a, Wildcard(), dotted=True), Literal("b"), dotted=True)),
        ("!a", Not(a)),
        ("!!a", Not(Not(a))),
        ("!a.b", Not(Index(a, Literal("b"), dotted=True))),
        ("a && b && c", And((a, b, c))),
        ("a || b || c", Or((a, b, c))),
        ("a && (b && c)", And((a, And((b, c))))),
        ("a || b && c", Or((a, And((b, c))))),
        ("a && b || c", Or((And((a, b)), c))),
        ("a < b < c", Compare("<", Compare("<", a, b), c)),
        ("a == b < c", Compare("==", a, Compare("<", b, c))),
        ("a == b && c", And((Compare("==", a, b), c))),
        ("!a < b", Compare("<", Not(a), b)),
        ("(a)", a),
        ("Format('{0}', a)", Call("Format", (Literal("{0}"), a))),
        ("success()", Call("success", ())),
        ("f.x", Index(NamedValue("f"), Literal("x"), dotted=True)),
        ("fromJSON('[1]')[0]", Index(Call("fromJSON", (Literal("[1]"),)), Literal(0.0))),
    ],
)
def test_tree(src: str, tree: object) -> None:
    assert parse(src) == tree


@pytest.mark.parametrize(
    ("src", "printed"),
    [
        ("a.b['c'][0].*[*]", "a.b['c'][0.0].*[*]"),
        ("(a || b) && c", "(a || b) && c"),
        ("a == (b == c)", "a == (b == c)"),
        ("!(a && b)", "!(a && b)"),
        ("(!a).b", "(!a).b"),
        ("'x'.y", "('x').y"),
        ("contains( a , 'it''s' )", "contains(a, 'it''s')"),
        ("-Infinity < NaN", "-Infinity < NaN"),
    ],
)
def test_printer(src: str, printed: str) -> None:
    assert unparse(parse(src)) == printed


def test_positions() -> None:
    tree = parse("x && join(y.z)")
    assert isinstance(tree, And) and tree.pos == 2
    call = tree.operands[1]
    assert isinstance(call, Call) and call.pos == 5
    index = call.args[0]
    assert isinstance(index, Index) and index.pos == 11 and index.key.pos == 12


@pytest.mark.parametrize(
    ("src", "message", "pos", "kind"),
    [
        ("1 <", "Unexpected end of expression: '<'. Located at position 3", 2, "parsing"),
        ("(", "Unexpected end of expression: '('", 0, "parsing"),
        ("a[1", "Unexpected end of expression: '1'", 2, "parsing"),
        ("1 < )", "Unexpected symbol: ')'. Located at position 5", 4, "parsing"),
        ("a.(", "Unexpected symbol: '('", 2, "parsing"),
        ("a[* == 1]", "Unexpected symbol: '=='", 4, "parsing"),
        ("f(1,)", "Unrecognized function: 'f'", 0, "parsing"),
        ("join(1,)", "Unexpected symbol: ')'", 7, "parsing"),
        ("join(1 2)", "Unexpected symbol: '2'", 7, "parsing"),
        ("a.b()", "Unexpected symbol: '('", 3, "parsing"),
        ("true()", "Unexpected symbol: '('", 4, "parsing"),
        ("x = 1", "Unexpected symbol: '='", 2, "lexing"),
        ("'abc", "Unexpected symbol: ''abc'", 0, "lexing"),
        ("join()", "Too few parameters supplied: 'join'", 0, "parsing"),
        ("toJSON(1, 2)", "Too many parameters supplied: 'toJSON'", 0, "parsing"),
        ("success(1)", "Too many parameters supplied: 'success'", 0, "parsing"),
        ("case(true, 1)", "Too few parameters supplied: 'case'", 0, "parsing"),
        ("case(true, 1, false, 2)", "Even number of parameters supplied", 0, "parsing"),
    ],
)
def test_syntax_errors(src: str, message: str, pos: int, kind: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse(src)
    assert message in str(info.value)
    assert str(info.value).endswith(f"within expression: {src}")
    assert (info.value.pos, info.value.column, info.value.kind) == (pos, pos + 1, kind)


def test_error_line_and_column() -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse("a &&\n  b ==")
    assert (info.value.pos, info.value.line, info.value.column) == (9, 2, 5)


def test_errors_are_user_input_errors() -> None:
    assert issubclass(ExpressionSyntaxError, ExpressionError)
    assert issubclass(ExpressionError, UserInputError)


def test_allowed_contexts_are_case_insensitive() -> None:
    assert parse("GitHub.sha", allowed_contexts=["github"]) == parse("GitHub.sha")
    with pytest.raises(ExpressionSyntaxError, match="Unrecognized named-value: 'secrets'"):
        parse("github.x == secrets.y", allowed_contexts={"github": 1})


@pytest.mark.parametrize(
    "src",
    [
        "!" * 50 + "a",
        "a" + ".b" * 50,
        "a" + "[0]" * 50,
        "toJSON(" * 50 + "1" + ")" * 50,
        "(" * 51 + "1" + ")" * 51,
        "a[" * 50 + "0" + "]" * 50,
    ],
)
def test_too_deep(src: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match="Exceeded max expression depth 50"):
        parse(src)


@pytest.mark.parametrize(
    "src", ["!" * 49 + "a", "a" + ".b" * 49, "(" * 50 + "1" + ")" * 50, " || ".join("a" * 500)]
)
def test_deep_but_allowed(src: str) -> None:
    assert depth(parse(src)) <= 50


def test_too_long() -> None:
    src = "'" + "x" * 20998 + "'"
    with pytest.raises(ExpressionSyntaxError, match="Exceeded max expression length 21000"):
        parse(src + " ")
    assert parse(src) == Literal("x" * 20998)


def test_referenced_names() -> None:
    tree = parse("github.ref == Matrix.os && success() || contains(env.*, format('{0}', x))")
    assert referenced_contexts(tree) == {"github", "matrix", "env", "x"}
    assert referenced_functions(tree) == {"success", "contains", "format"}
    assert referenced_contexts(parse("a.github['matrix']")) == {"a"}
