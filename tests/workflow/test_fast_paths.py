"""The shortcuts ``vmrunner check`` takes, against the plain readings they replace:

* ``rule_for`` (a trie walk) against GitHub's context table read rule by rule: of the
  rules whose pattern matches a prefix of the path, the longest, the first of equals;
* ``resolve_plain``'s first-character shortcut against trying every core-schema type.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.workflow import loader
from vmrunner.workflow.loader import Scalar, resolve_plain
from vmrunner.workflow.validate import CONTEXT_RULES, ContextRule, rule_for


def reference(path: tuple[str | int, ...]) -> ContextRule | None:
    best: ContextRule | None = None
    for rule in CONTEXT_RULES:
        fits = len(rule.path) <= len(path) and all(
            p == "*" or p == item for p, item in zip(rule.path, path, strict=False)
        )
        if fits and (best is None or len(rule.path) > len(best.path)):
            best = rule
    return best


SEGMENTS = sorted({part for rule in CONTEXT_RULES for part in rule.path} | {"x", "build"})
segment = st.one_of(st.sampled_from(SEGMENTS), st.integers(0, 3), st.text(max_size=3))


@given(st.lists(segment, max_size=7).map(tuple))
def test_agrees_with_the_table(path: tuple[str | int, ...]) -> None:
    assert rule_for(path) == reference(path)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("jobs", "b", "steps", 0, "if"), ("jobs", "*", "steps", "*", "if")),
        (("jobs", "b", "steps", 0, "with", "x"), ("jobs", "*", "steps", "*")),
        (("jobs", "b", "services", "db", "env", "K"), ("jobs", "*", "services", "*", "env")),
        (("jobs", "b", "services", "db", "image"), ("jobs", "*", "services")),
        (("env", "K"), ("env",)),
        (("on", "push", "branches", 0), None),
        ((), None),
    ],
)
def test_examples(path: tuple[str | int, ...], expected: tuple[str, ...] | None) -> None:
    found = rule_for(path)
    assert (found.path if found else None) == expected


def resolve_every_type(text: str) -> Scalar:
    for kind in ("null", "bool", "int", "float"):
        ok, value = loader._TYPED[kind](text)
        if ok:
            return value
    return text


PLAIN = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="~nNtTfFoxXaeilrsuEI0123456789+-._ ", max_size=8),
    st.sampled_from(["", "~", "null", "True", "FALSE", "0o17", "0x1F", "-.inf", ".NaN", "1e3"]),
)


@given(PLAIN)
def test_resolve_plain_shortcut(text: str) -> None:
    fast, slow = resolve_plain(text), resolve_every_type(text)
    assert (type(fast), repr(fast)) == (type(slow), repr(slow))
