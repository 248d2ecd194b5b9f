"""Table tests for the built-in functions."""

from __future__ import annotations

from typing import Any

import pytest

from vmrunner.workflow.expressions import ExpressionError, Functions, evaluate

CTX: dict[str, Any] = {
    "labels": [{"name": "bug"}, {"name": "ui"}],
    "obj": {"a": 1, "b": [True, None]},
    "arr": ["x", 2, None],
    "text": "Hello World",
}


def ev(src: str, functions: Functions | None = None) -> Any:
    return evaluate(src, CTX, functions=functions)


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("contains(text, 'WORLD')", True),
        ("contains(arr, 'X')", True),
        ("contains(arr, '2')", True),
        ("contains(arr, 3)", False),
        ("contains(obj, 'a')", False),
        ("contains(labels.*.name, 'ui')", True),
        ("startsWith(text, 'hello')", True),
        ("endsWith(text, 'WORLD')", True),
        ("startsWith(arr, '')", False),
        ("endsWith(12.5, '.5')", True),
        ("CONTAINS('abc', 'b')", True),
        ("format('{0}-{1}', 'a', 1.50)", "a-1.5"),
        ("format('{1}{0}{1}', 'a', 'b')", "bab"),
        ("format('{{{0}}}', 'x')", "{x}"),
        ("format('{000}', 'x')", "x"),
        ("format('{0}', obj)", "Object"),
        ("format('{1}', format('{'), 'ok')", "ok"),
        ("join(labels.*.name)", "bug,ui"),
        ("join(labels.*.name, ' + ')", "bug + ui"),
        ("join(arr, '-')", "x-2-"),
        ("join(obj)", ""),
        ("join(fromJSON('[1]'), format('{'))", "1"),
        ("toJSON(obj)", '{\n  "a": 1,\n  "b": [\n    true,\n    null\n  ]\n}'),
        ("toJSON('a\"\\\n\u0001\u2028é')", '"a\\"\\\\\\n\\u0001\\u2028é"'),
        ("toJSON(1.5e300)", "1.5E+300"),
        ('fromJSON(\'{"A": [1, 2.5, "x"]}\').a[1]', 2.5),
        ("fromJSON(' true ')", True),
        ("case(false, 1, true, 2, 3)", 2.0),
        ("case(true, 1, format('{'))", 1.0),
        ("case(false, format('{'), 3)", 3.0),
    ],
)
def test_function(src: str, expected: Any) -> None:
    assert ev(src) == expected


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ("format('{0')", "The following format string is invalid: {0"),
        ("format('{a}', 1)", "The following format string is invalid: {a}"),
        ("format('{256}', 1)", "The following format string is invalid: {256}"),
        ("format('{1}', 1)", "references more arguments than were supplied"),
        (
            "format('{0:x}', 1)",
            "The format specifiers 'x' are not valid for objects of type 'Number'",
        ),
        ("format('{0:x', 1)", "The following format string is invalid"),
        ("fromJSON('')", "Error parsing fromJson"),
        ("fromJSON('{a: 1}')", "Error parsing fromJson"),
        (
            "fromJSON(format('" + "{0}" * 100 + "', '" + "[" * 100 + "'))",
            "Error parsing fromJson",
        ),
        ("case(1, 2, 3)", "case predicate must evaluate to a boolean value"),
        ("hashFiles('**/x')", "hashFiles() is not available here"),
        ("success()", "success() is not available here"),
        ("always()", "always() is not available here"),
    ],
)
def test_function_errors(src: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        ev(src)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("status", "success", "failure", "cancelled"),
    [
        ("success", True, False, False),
        ("failure", False, True, False),
        ("cancelled", False, False, True),
    ],
)
def test_status_functions(status: Any, success: bool, failure: bool, cancelled: bool) -> None:
    functions = Functions(job_status=status)
    assert ev("success()", functions) is success
    assert ev("FAILURE()", functions) is failure
    assert ev("cancelled()", functions) is cancelled
    assert ev("always()", functions) is True


def test_bad_job_status_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="job_status"):
        Functions(job_status="skipped")  # type: ignore[arg-type]


def test_hash_files_gets_patterns_as_strings() -> None:
    seen: list[list[str]] = []

    def fake(patterns: list[str]) -> str:
        seen.append(patterns)
        return "abc123"

    assert ev("hashFiles('**/go.sum', 1, null)", Functions(hash_files=fake)) == "abc123"
    assert seen == [["**/go.sum", "1", ""]]


def test_memory_cap_on_one_big_string() -> None:
    with pytest.raises(ExpressionError, match="maximum allowed memory"):
        ev(
            "format('"
            + "{0}" * 60
            + "', format('"
            + "{0}" * 60
            + "', format('"
            + "{0}" * 60
            + "', text)))"
        )
