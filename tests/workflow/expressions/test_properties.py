"""Property tests: the parser, printer and evaluator on arbitrary input."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vmrunner.workflow.expressions import (
    ExpressionError,
    ExpressionSyntaxError,
    Functions,
    Node,
    evaluate,
    evaluate_template,
    find_expressions,
    parse,
    to_bool,
    to_number,
    to_string,
    unparse,
)
from vmrunner.workflow.expressions.functions import FUNCTIONS
from vmrunner.workflow.expressions.nodes import (
    COMPARISON_OPERATORS,
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

EXPRESSION_CHARS = "abcxyz_-019.+eE'*!=<>&|()[],{} \n\t$\\\"@ςİ😊"
CONTEXT_NAMES = ["github", "matrix", "env", "steps"]
KEYWORDS = {"true", "false", "null", "NaN", "Infinity"}

expression_text = st.text(alphabet=EXPRESSION_CHARS, max_size=60) | st.text(max_size=30)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,6}", fullmatch=True).filter(
    lambda name: name not in KEYWORDS
)
numbers = st.floats(allow_nan=False) | st.integers(-(10**20), 10**20).map(float)
literals = st.builds(Literal, st.none() | st.booleans() | numbers | st.text(max_size=8))


def _calls(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    def build(name: str, args: list[Node]) -> Node:
        spec = FUNCTIONS[name.lower()]
        count = max(spec.min_args, min(len(args), spec.max_args, spec.min_args + 3))
        if spec.odd_args and count % 2 == 0:
            count += 1
        return Call(name, tuple([*args, *[Literal("x")] * count][:count]))

    names = st.sampled_from([spec.name for spec in FUNCTIONS.values()])
    return st.builds(build, names, st.lists(children, max_size=4))


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    operands = st.lists(children, min_size=2, max_size=3).map(tuple)
    keys = (
        st.builds(lambda t, k: Index(t, Literal(k), dotted=True), children, identifiers)
        | st.builds(lambda t: Index(t, Wildcard(), dotted=True), children)
        | st.builds(lambda t: Index(t, Wildcard()), children)
        | st.builds(Index, children, children)
    )
    return (
        st.builds(Not, children)
        | st.builds(Compare, st.sampled_from(COMPARISON_OPERATORS), children, children)
        | st.builds(And, operands)
        | st.builds(Or, operands)
        | keys
        | _calls(children)
    )


trees = st.recursive(
    literals | st.builds(NamedValue, st.sampled_from(CONTEXT_NAMES) | identifiers),
    _extend,
    max_leaves=12,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
contexts = st.fixed_dictionaries({name: json_values for name in CONTEXT_NAMES})
FUNCS = Functions(job_status="failure", hash_files=lambda patterns: "hash:" + ",".join(patterns))


@settings(max_examples=400, deadline=None)
@given(expression_text)
def test_parser_raises_only_syntax_errors_located_in_the_input(src: str) -> None:
    try:
        parse(src)
    except ExpressionSyntaxError as exc:
        assert 0 <= exc.pos <= len(src)
        assert exc.column >= 1
        assert exc.line >= 1


@settings(max_examples=300, deadline=None)
@given(trees)
def test_print_then_parse_round_trips(tree: Node) -> None:
    assert parse(unparse(tree)) == tree


@settings(max_examples=300, deadline=None)
@given(expression_text)
def test_printing_a_parsed_expression_is_a_fixed_point(src: str) -> None:
    try:
        tree = parse(src)
    except ExpressionSyntaxError:
        return
    printed = unparse(tree)
    assert unparse(parse(printed)) == printed


def _evaluate_or_error(tree: Node | str, ctx: dict[str, Any]) -> None:
    try:
        value = evaluate(tree, ctx, functions=FUNCS)
    except ExpressionError:
        return
    to_string(value), to_bool(value), to_number(value)


@settings(max_examples=300, deadline=None)
@given(trees, contexts)
def test_evaluator_raises_only_expression_errors_on_random_trees(
    tree: Node, ctx: dict[str, Any]
) -> None:
    _evaluate_or_error(tree, ctx)


@settings(max_examples=300, deadline=None)
@given(expression_text, contexts)
def test_evaluator_raises_only_expression_errors_on_random_text(
    src: str, ctx: dict[str, Any]
) -> None:
    _evaluate_or_error(src, ctx)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="${}' ab", max_size=30))
def test_templates_raise_only_expression_errors(text: str) -> None:
    try:
        spans = find_expressions(text)
        evaluate_template(text, {"a": 1})
    except ExpressionError:
        return
    for start, end, inner in spans:
        assert text[start:end] == "${{" + inner + "}}"


@given(numbers)
def test_numbers_print_back_to_the_same_double(number: float) -> None:
    value = evaluate(unparse(Literal(number)), {})
    assert value == number and math.copysign(1, value) == math.copysign(1, number)
