"""Bounded text for agents (pure): tables of cases and properties."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.mcp.bounded import (
    MIN_KEEP,
    bound_document,
    error_window,
    keep_ends,
    keep_tail,
    tail_window,
)

LOG = st.text(st.characters(codec="utf-8"), max_size=5000)


@given(LOG, st.integers(120, 6000))
def test_keep_tail_fits_and_keeps_the_end(text: str, limit: int) -> None:
    out = keep_tail(text, limit, "7")
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text
    else:
        assert "get_logs(run_id='7')" in out
        kept = out.split("...]\n", 1)[1]
        assert text.endswith(kept)


@given(LOG, st.integers(120, 6000))
def test_keep_ends_fits_and_keeps_both_ends(text: str, limit: int) -> None:
    out = keep_ends(text, limit, "7")
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text
    else:
        head = out.split("\n[...", 1)[0]
        assert text.startswith(head) and "characters cut" in out


LINES = [f"line {i}" for i in range(1, 101)]


@pytest.mark.parametrize(
    ("lines", "count", "first", "last", "error_line"),
    [
        (LINES, 10, 91, 100, None),  # no error: the tail
        ([*LINES[:49], "E: failed to fetch", *LINES[50:]], 9, 47, 55, 50),
        (["fatal: boom", *LINES], 6, 1, 6, 1),  # error on the first line
        ([*LINES, "Traceback (most recent call last):"], 6, 96, 101, 101),  # on the last
        ([], 5, 1, 0, None),
    ],
)
def test_error_window_is_around_the_first_error(
    lines: list[str], count: int, first: int, last: int, error_line: int | None
) -> None:
    win = error_window(lines, count)
    assert (win.first, win.last, win.error_line) == (first, last, error_line)
    assert win.text == "\n".join(lines[first - 1 : last])


@given(st.lists(st.text(max_size=20), max_size=200), st.integers(1, 300))
def test_tail_window_is_the_last_lines(lines: list[str], count: int) -> None:
    win = tail_window(lines, count)
    assert win.last == len(lines) and win.last - win.first + 1 == min(count, len(lines))
    assert win.truncated == (count < len(lines))


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3000),
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids, max_size=5)
    ),
    max_leaves=20,
)


def shape(node: Any) -> Any:
    """A document with every string replaced by its type: what bounding keeps."""
    if isinstance(node, dict):
        return {k: shape(v) for k, v in node.items()}
    if isinstance(node, list):
        return [shape(v) for v in node]
    return "str" if isinstance(node, str) else node


@given(st.dictionaries(st.text(max_size=8), JSONISH, max_size=6), st.integers(1000, 20000))
def test_bound_document_keeps_the_shape_and_fits_when_it_can(
    doc: dict[str, Any], budget: int
) -> None:
    out = bound_document(doc, budget, "3")
    assert shape(out) == shape(doc)
    size = len(json.dumps(out, ensure_ascii=False))
    if len(json.dumps(doc, ensure_ascii=False)) <= budget:
        assert out == doc
    else:
        strings = [len(s) for s in _strings(out)]
        assert (
            size <= budget
            or all(n <= MIN_KEEP + 1 for n in strings)
            or size < len(json.dumps(doc, ensure_ascii=False))
        )


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    items = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    return [s for v in items for s in _strings(v)]


def test_bound_document_cuts_the_longest_log_to_its_end() -> None:
    doc = {
        "id": "5",
        "phases": [{"name": "boot", "log_tail": "start\n" + "x\n" * 20000 + "the end"}],
    }
    out = bound_document(doc, 4096, "5")
    assert len(json.dumps(out)) <= 4096
    tail = out["phases"][0]["log_tail"]
    assert tail.endswith("the end") and "get_logs(run_id='5')" in tail and out["id"] == "5"
