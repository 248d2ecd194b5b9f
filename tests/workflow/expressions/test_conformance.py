"""GitHub's own expression test vectors (tests/data/conformance/expressions), one test each.

A vector is ``{expr, contexts?, result: {kind, value}}`` or ``{expr, contexts?, err: {kind,
value}}``. As in GitHub's own harness, the named-values allowed are the keys of
``contexts``, and an expected error message matches when it is contained in ours (GitHub
matches the same way, so ``Too few parameters supplied: `` matches the full message).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pytest

from datafiles import EXPRESSION_VECTORS
from vmrunner.workflow.expressions import (
    ExpressionError,
    ExpressionSyntaxError,
    evaluate,
    kind_of,
)

# Vectors that are specific to another engine, by id, with the reason. Each one still runs,
# as a strict xfail: if it starts passing, or its id stops naming a vector, the suite fails.
EXCLUDED: dict[str, str] = {}


def _load() -> dict[str, dict[str, Any]]:
    vectors: dict[str, dict[str, Any]] = {}
    for path in sorted(EXPRESSION_VECTORS.glob("*.json")):
        for group, cases in json.loads(path.read_text(encoding="utf-8")).items():
            for index, case in enumerate(cases):
                vectors[f"{path.stem}/{group}/{index}"] = case
    return vectors


VECTORS = _load()


def _params() -> list[Any]:
    params = []
    for vector_id, case in VECTORS.items():
        marks = []
        if vector_id in EXCLUDED:
            marks.append(pytest.mark.xfail(strict=True, reason=EXCLUDED[vector_id]))
        params.append(pytest.param(case, id=vector_id, marks=marks))
    return params


def same_value(actual: Any, expected: Any) -> bool:
    """Deep equality where kinds must match and numbers compare as doubles."""
    if kind_of(actual) != kind_of(expected):
        return False
    if isinstance(expected, Mapping):
        return list(actual) == list(expected) and all(
            same_value(actual[k], v) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(map(same_value, actual, expected))
    if kind_of(expected) == "Number":
        return bool(actual == expected or (math.isnan(actual) and math.isnan(expected)))
    return bool(actual == expected)


@pytest.mark.parametrize("case", _params())
def test_vector(case: dict[str, Any]) -> None:
    contexts = case.get("contexts") or {}
    if "err" in case:
        with pytest.raises(ExpressionError) as info:
            evaluate(case["expr"], contexts)
        kind, message = case["err"]["kind"], case["err"]["value"]
        if kind == "evaluation":
            assert not isinstance(info.value, ExpressionSyntaxError)
        else:
            assert isinstance(info.value, ExpressionSyntaxError)
            assert info.value.kind == kind
        assert message in str(info.value)
    else:
        result = evaluate(case["expr"], contexts)
        expected = case["result"]
        assert kind_of(result) == expected["kind"]
        assert same_value(result, expected["value"]), (result, expected["value"])


def test_every_vector_is_collected() -> None:
    assert len(VECTORS) >= 1000


def test_excluded_vectors_are_real() -> None:
    unknown = sorted(set(EXCLUDED) - set(VECTORS))
    assert not unknown, f"EXCLUDED names vectors that do not exist: {unknown}"
