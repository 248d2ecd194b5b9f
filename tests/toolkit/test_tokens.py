"""The runtime token: what the clients decode, and what the service accepts."""

from __future__ import annotations

import base64
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.toolkit.tokens import (
    READ,
    WRITE,
    CacheScope,
    Claims,
    TokenError,
    cache_scopes,
    issue,
    verify,
)

KEY = b"k" * 32


def _claims(ttl: float = 60) -> Claims:
    return Claims(
        "run-uuid", "job-uuid", cache_scopes("refs/heads/f", "refs/heads/main"), time.time() + ttl
    )


def test_claims_as_the_clients_read_them() -> None:
    body = issue(KEY, _claims()).split(".")[1]
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert "Actions.Results:run-uuid:job-uuid" in data["scp"].split(" ")
    assert json.loads(data["ac"]) == [
        {"Scope": "refs/heads/f", "Permission": 3},
        {"Scope": "refs/heads/main", "Permission": 1},
    ]


def test_round_trip_and_scopes() -> None:
    got = verify(KEY, issue(KEY, _claims()))
    assert (got.run_id, got.job_id) == ("run-uuid", "job-uuid")
    assert got.readable() == ("refs/heads/f", "refs/heads/main")
    assert got.writable() == "refs/heads/f"


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("", "not a JWT"),
        ("a.b", "not a JWT"),
        ("@@@.@@@.@@@", "malformed"),
    ],
)
def test_malformed_tokens(token: str, why: str) -> None:
    with pytest.raises(TokenError, match=why):
        verify(KEY, token)


def test_other_key_and_expired() -> None:
    with pytest.raises(TokenError, match="signature"):
        verify(b"other" * 8, issue(KEY, _claims()))
    with pytest.raises(TokenError, match="expired"):
        verify(KEY, issue(KEY, _claims(ttl=-5)))


@given(st.integers(0, 2), st.integers(0, 3))
def test_any_tampered_byte_is_refused(part: int, pos: int) -> None:
    token = issue(KEY, _claims())
    parts = token.split(".")
    p = parts[part]
    i = pos % len(p)
    parts[part] = p[:i] + ("A" if p[i] != "A" else "B") + p[i + 1 :]
    with pytest.raises(TokenError):
        verify(KEY, ".".join(parts))


@pytest.mark.parametrize(
    ("ref", "default", "base", "want"),
    [
        ("refs/heads/main", "refs/heads/main", None, [("refs/heads/main", READ | WRITE)]),
        ("refs/heads/f", "refs/heads/main", None,
         [("refs/heads/f", READ | WRITE), ("refs/heads/main", READ)]),
        ("refs/pull/3/merge", "refs/heads/main", "refs/heads/dev",
         [("refs/pull/3/merge", READ | WRITE), ("refs/heads/dev", READ), ("refs/heads/main", READ)]),
    ],
)  # fmt: skip
def test_cache_scopes(
    ref: str, default: str, base: str | None, want: list[tuple[str, int]]
) -> None:
    assert cache_scopes(ref, default, base) == tuple(CacheScope(r, p) for r, p in want)
