"""The client's error classification (a table) and its paging helper."""

from __future__ import annotations

import pytest

from vmrunner.github.client import GitHubClient, GitHubError, _next_link, classify, retry_at_from

NOW = 1_000.0

# status, headers, message -> retryable, retry_at, rate_limited
CASES = [
    (502, {}, "Bad Gateway", True, None, False),
    (500, {"retry-after": "7"}, "oops", True, NOW + 7, False),
    (408, {}, "timeout", True, None, False),
    (429, {"retry-after": "3"}, "slow down", True, NOW + 3, True),
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "2000"}, "API rate limit exceeded",
     True, 2000.0, True),
    (403, {"retry-after": "60"}, "You have exceeded a secondary rate limit", True, NOW + 60, True),
    (403, {}, "Resource not accessible by integration", False, None, False),
    (403, {"x-ratelimit-remaining": "12", "x-ratelimit-reset": "2000"}, "Forbidden", False, None, False),
    (404, {}, "Not Found", False, None, False),
    (422, {}, "Validation Failed", False, None, False),
    (401, {}, "Bad credentials", False, None, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "headers", "message", "retryable", "retry_at", "limited"), CASES
)
def test_classify(
    status: int, headers: dict[str, str], message: str, retryable: bool, retry_at: float | None,
    limited: bool,
) -> None:  # fmt: skip
    error = classify(status, headers, message, NOW)
    assert (error.status, error.retryable, error.retry_at, error.rate_limited) == (
        status, retryable, retry_at, limited)  # fmt: skip
    assert str(status) in str(error)


def test_retry_at_ignores_nonsense() -> None:
    assert retry_at_from({"retry-after": "soon"}, NOW) is None
    assert retry_at_from({"x-ratelimit-reset": "2000"}, NOW) is None  # quota left


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://x/app/hook/deliveries?cursor=v1_9>; rel="next", <https://x/a?c=1>; rel="prev"',
         "https://x/app/hook/deliveries?cursor=v1_9"),
        ('<https://x/a?c=1>; rel="prev"', None),
        ("", None),
    ],
)  # fmt: skip
def test_next_link(header: str, expected: str | None) -> None:
    assert _next_link(header) == expected


def test_credentials_are_required() -> None:
    with pytest.raises(GitHubError, match="needs a token"):
        GitHubClient("https://api.github.com")
    with pytest.raises(GitHubError, match="needs a token"):
        GitHubClient("https://api.github.com", app_id="1")
    assert GitHubClient("https://ghe.example/api/v3", app_id="1", private_key="k").app
    assert not GitHubClient("https://api.github.com", token="t").app


def test_an_unreachable_github_is_retryable() -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = GitHubClient(f"http://127.0.0.1:{port}", token="t", timeout_s=5)
    with pytest.raises(GitHubError) as caught:
        client.create_status("o/r", "a" * 40, {"state": "pending"})
    assert caught.value.retryable and caught.value.status is None
    with pytest.raises(GitHubError, match="owner/name"):
        client.create_status("no-slash", "a" * 40, {"state": "pending"})
