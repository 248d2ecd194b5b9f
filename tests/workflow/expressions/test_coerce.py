"""Table tests for GitHub's coercion rules."""

from __future__ import annotations

import math
from typing import Any

import pytest

from vmrunner.workflow.expressions import ExpressionError, kind_of, to_bool, to_number, to_string
from vmrunner.workflow.expressions.coerce import (
    compare,
    compare_strings,
    fold,
    format_json_number,
    loose_equals,
    parse_number,
)

NAN = math.nan
INF = math.inf
ARRAY: list[Any] = []
OBJECT: dict[str, Any] = {}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "Null"),
        (True, "Boolean"),
        (0, "Number"),
        (1.5, "Number"),
        ("", "String"),
        ([], "Array"),
        ((1,), "Array"),
        ({}, "Object"),
    ],
)
def test_kind_of(value: Any, kind: str) -> None:
    assert kind_of(value) == kind


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes"])
def test_unsupported_values_are_expression_errors(value: Any) -> None:
    with pytest.raises(ExpressionError, match="unsupported value"):
        to_string(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (True, True),
        (0, False),
        (-0.0, False),
        (NAN, False),
        (0.1, True),
        (-INF, True),
        ("", False),
        (" ", True),
        ("false", True),
        ("0", True),
        ([], True),
        ({}, True),
    ],
)
def test_to_bool(value: Any, expected: bool) -> None:
    assert to_bool(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0.0),
        (False, 0.0),
        (True, 1.0),
        (7, 7.0),
        ("", 0.0),
        ("  ", 0.0),
        (" 12.5 ", 12.5),
        ("+1", 1.0),
        ("-.5", -0.5),
        ("1.", 1.0),
        ("1e3", 1000.0),
        ("0xff", 255.0),
        ("0o10", 8.0),
        ("Infinity", INF),
        ("-Infinity", -INF),
        ("\u00a01\u2003", 1.0),
        (10**400, INF),
        (-(10**400), -INF),
    ],
)
def test_to_number(value: Any, expected: float) -> None:
    assert to_number(value) == expected


@pytest.mark.parametrize(
    "value", [[], {}, "abc", "0x", "0X1F", "0b1", "-0xff", "1_000", "inf", "nan", "1e", "1 2"]
)
def test_to_number_nan(value: Any) -> None:
    assert math.isnan(to_number(value))


def test_parse_number_does_not_trim_python_only_whitespace() -> None:
    assert math.isnan(parse_number("\x1c1"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        ("x", "x"),
        ([1], "Array"),
        ({"a": 1}, "Object"),
        (1, "1"),
        (1.0, "1"),
        (-0.0, "0"),
        (0.5, "0.5"),
        (-2.0, "-2"),
        (123456.789, "123456.789"),
        (0.84551240822557006, "0.84551240822557"),
        (1e14, "100000000000000"),
        (1e15, "1E+15"),
        (1.5e-5, "1.5E-05"),
        (0.0001, "0.0001"),
        (12345678901234567890, "1.23456789012346E+19"),
        (1 / 3, "0.333333333333333"),
        (NAN, "NaN"),
        (INF, "Infinity"),
        (-INF, "-Infinity"),
    ],
)
def test_to_string(value: Any, expected: str) -> None:
    assert to_string(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (-0.0, "0"),
        (3.0, "3"),
        (1234.5, "1234.5"),
        (0.1, "0.1"),
        (1e18, "1000000000000000000"),
        (1e20, "1E+20"),
        (1e300, "1E+300"),
        (1e-7, "1E-07"),
        (0.8455124082255701, "0.8455124082255701"),
        (NAN, "NaN"),
    ],
)
def test_format_json_number(value: float, expected: str) -> None:
    assert format_json_number(value) == expected


SAME = object()


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (None, None, True),
        (None, 0, True),
        (None, "", True),
        (None, False, True),
        (None, "null", False),
        (True, 1, True),
        (True, "1", True),
        (True, "true", False),
        (False, " 0.0 ", True),
        (1, "0x1", True),
        ("ABC", "abc", True),
        ("ß", "SS", False),
        ("ς", "σ", True),
        ("ı", "I", False),
        ("i", "İ", False),
        (NAN, NAN, False),
        (INF, "Infinity", True),
        ([], [], False),
        ({}, {}, False),
        (ARRAY, ARRAY, True),
        (OBJECT, OBJECT, True),
        ([], 0, False),
        ({}, "Object", False),
        (1, 1.0, True),
        (True, 2, False),
    ],
)
def test_loose_equals(left: Any, right: Any, expected: bool) -> None:
    assert loose_equals(left, right) is expected
    assert loose_equals(right, left) is expected


@pytest.mark.parametrize(
    ("left", "op", "right", "expected"),
    [
        (1, "<", 2, True),
        (2, "<", 1, False),
        (1, "<=", 1, True),
        ("a", "<", "B", True),
        ("b", ">", "A", True),
        ("a", ">=", "A", True),
        (True, ">", False, True),
        (False, ">", True, False),
        (None, "<", 1, True),
        (None, "<=", None, True),
        (None, "<", None, False),
        ("10", ">", 9, True),
        ("abc", "<", 1, False),
        (NAN, "<=", NAN, False),
        (NAN, ">", 0, False),
        ([], "<", 1, False),
        (ARRAY, "<=", ARRAY, True),
        (ARRAY, "<", ARRAY, False),
        ({}, ">=", {}, False),
        ("\uffff", "<", "😊", False),
        ("Z", "<", "_", True),
        ("z", "<", "_", True),
    ],
)
def test_compare(left: Any, op: str, right: Any, expected: bool) -> None:
    assert compare(op, left, right) is expected


def test_fold_is_length_preserving_and_ordinal() -> None:
    assert fold("aßı€ς") == "Aßı€Σ"
    assert compare_strings("😊", "\uffff") == -1  # UTF-16 code units, not code points
    assert compare_strings("abc", "ABC") == 0
