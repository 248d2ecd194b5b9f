"""The dashboard's signed cookie session and CSRF check."""

from __future__ import annotations

import pytest

from vmrunner.dashboard.session import csrf_ok, decode, encode, new_session
from vmrunner.dashboard.web import safe_next

KEY = b"k" * 32


def test_a_session_round_trips() -> None:
    s = new_session("abc", "writer", "write", now=1000.0)
    assert decode(KEY, encode(KEY, s), now=1001.0) == s
    assert s.can_write and csrf_ok(s, s.csrf)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # signature changed
        lambda v: "x" + v,  # body changed
        lambda v: v.replace(".", ""),  # no signature
        lambda v: v + ".more",
        lambda v: "",
    ],
    ids=["signature", "body", "unsigned", "extra-part", "empty"],
)
def test_a_tampered_cookie_is_no_session(mangle: object) -> None:
    value = encode(KEY, new_session("abc", "reader", "read", now=1000.0))
    assert callable(mangle)
    assert decode(KEY, mangle(value), now=1001.0) is None


def test_another_key_or_an_expired_session_is_no_session() -> None:
    s = new_session("abc", "reader", "read", now=1000.0)
    assert decode(b"other" * 8, encode(KEY, s), now=1001.0) is None
    assert decode(KEY, encode(KEY, s), now=s.exp + 1) is None


def test_csrf() -> None:
    s = new_session("abc", "reader", "read")
    assert not s.can_write
    assert not csrf_ok(s, None) and not csrf_ok(s, "") and not csrf_ok(s, s.csrf + "x")
    assert not csrf_ok(None, s.csrf)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("/runs/3", "/runs/3"), ("/?kind=exec", "/?kind=exec"), ("//evil.example/", "/"),
     ("/\\evil.example", "/"), ("https://evil.example/", "/"), (None, "/"), ("", "/")],
)  # fmt: skip
def test_only_local_paths_are_followed_after_login(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected
