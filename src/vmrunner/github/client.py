"""The GitHub REST calls vmrunner makes, through githubkit, with one error type.

``GitHubClient(api_url, token=..., app_id=..., private_key=...)`` talks to
``api_url`` (``https://api.github.com`` or a GHES ``https://host/api/v3``): with a
token (a PAT or an installation token) every call uses it; with an App (``app_id`` and
its PEM ``private_key``) the ``/app/...`` calls are signed with the App's JWT and the
repository calls use the installation token of that repository's installation
(looked up once per repository, the token cached by githubkit until it expires).

Calls are synchronous and do not retry: githubkit's own retry is off, and every failure
becomes :class:`GitHubError` saying whether a later attempt may succeed (5xx, timeouts,
connection errors, rate limits) and from when (``Retry-After``, ``x-ratelimit-reset``).
The caller (the outbox sender) decides when to try again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from vmrunner.errors import VmrunnerError

if TYPE_CHECKING:
    from githubkit import GitHub

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 30.0
APP = ("app", 0)


class GitHubError(VmrunnerError):
    """A GitHub call failed. ``status`` is the HTTP status (None when no answer came);
    ``retryable`` whether the same call may succeed later; ``retry_at`` the Unix time
    GitHub asked us to wait for (``Retry-After``, ``x-ratelimit-reset``), if it did;
    ``rate_limited`` whether the failure was a rate limit (every call waits then)."""

    def __init__(
        self, message: str, *, status: int | None, retryable: bool,
        retry_at: float | None = None, rate_limited: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_at = retry_at
        self.rate_limited = rate_limited


@dataclass(frozen=True)
class HookDelivery:
    """One attempt GitHub made to deliver a webhook to the App (``guid`` is the
    ``X-GitHub-Delivery`` id, shared by the redeliveries of one event)."""

    id: int
    guid: str
    delivered_at: str
    redelivery: bool
    status_code: int
    event: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


def retry_at_from(headers: Mapping[str, str], now: float) -> float | None:
    """When GitHub said to try again: ``Retry-After`` (seconds) first, else the
    ``x-ratelimit-reset`` epoch when the remaining quota is 0. None when neither."""
    after = headers.get("retry-after")
    if after is not None and after.strip().isdigit():
        return now + int(after)
    reset = headers.get("x-ratelimit-reset")
    if headers.get("x-ratelimit-remaining") == "0" and reset and reset.strip().isdigit():
        return float(int(reset))
    return None


def classify(status: int, headers: Mapping[str, str], message: str, now: float) -> GitHubError:
    """The error for an HTTP answer ``status``: 5xx, 408, 429 and 403 rate limits are
    retryable; other 4xx are not."""
    retry_at = retry_at_from(headers, now)
    limited = status == 429 or (status == 403 and (
        retry_at is not None or "rate limit" in message.lower()))  # fmt: skip
    retryable = status >= 500 or status == 408 or limited
    return GitHubError(f"GitHub answered {status}: {message[:500]}", status=status,
                       retryable=retryable, retry_at=retry_at, rate_limited=limited)  # fmt: skip


def _translate(exc: Exception) -> GitHubError:
    """githubkit's exceptions as one :class:`GitHubError`."""
    from githubkit.exception import GitHubException, RequestError, RequestFailed

    if isinstance(exc, RequestFailed):
        response = exc.response.raw_response
        return classify(response.status_code, response.headers, response.text, time.time())
    if isinstance(exc, RequestError):  # timeouts, refused connections, broken transfers
        return GitHubError(f"GitHub unreachable: {exc.exc!r}", status=None, retryable=True)
    if isinstance(exc, GitHubException):  # bad credentials, a key that does not sign
        return GitHubError(f"GitHub client error: {exc!r}", status=None, retryable=False)
    raise exc


def _path(template: str, **parts: str | int) -> str:
    return template.format(**{k: quote(str(v), safe="") for k, v in parts.items()})


def _split(repo: str) -> tuple[str, str]:
    owner, _, name = repo.partition("/")
    if not owner or not name:
        raise GitHubError(f"not an owner/name repository: {repo!r}", status=None, retryable=False)
    return owner, name


class GitHubClient:
    """The calls of the outbox sender and the reconciler (see the module docstring).
    Construction does no I/O. ``app`` is true in App mode."""

    def __init__(
        self, api_url: str, token: str = "", app_id: str = "", private_key: str = "",
        *, timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:  # fmt: skip
        if not token and not (app_id and private_key):
            raise GitHubError("GitHub client needs a token, or an App id and private key",
                              status=None, retryable=False)  # fmt: skip
        self.api_url = api_url
        self.token = token
        self.app_id = app_id
        self.private_key = private_key
        self.timeout_s = timeout_s
        self._installations: dict[str, int] = {}
        self._git_tokens: dict[int, tuple[str, float]] = {}  # installation -> (token, expiry)
        self._clients: dict[tuple[str, int], GitHub[Any]] = {}
        self._cache: Any = None  # githubkit's token cache, this client's own (not process-wide)
        self._transport: Any = None  # one connection pool for every call (see _kept_transport)
        self._lock = threading.Lock()  # the sender and the reconciler share a client

    @property
    def app(self) -> bool:
        return bool(self.app_id and self.private_key)

    def _auth(self, key: tuple[str, int]) -> Any:
        from githubkit import AppAuthStrategy, AppInstallationAuthStrategy

        kind, installation = key
        if kind == "app":
            return AppAuthStrategy(self.app_id, self.private_key)
        if kind == "installation":
            return AppInstallationAuthStrategy(self.app_id, self.private_key, installation)
        return self.token

    def _github(self, key: tuple[str, int]) -> GitHub[Any]:
        """The githubkit client for ``key``: ("token", 0), ("app", 0) or
        ("installation", id); made once, kept for its connection pool and token cache."""
        from githubkit import GitHub
        from githubkit.cache import MemCacheStrategy

        with self._lock:
            if self._cache is None:
                self._cache, self._transport = MemCacheStrategy(), _kept_transport()
            if key not in self._clients:
                self._clients[key] = GitHub(
                    self._auth(key), base_url=self.api_url, timeout=self.timeout_s,
                    auto_retry=False, http_cache=False, user_agent="vmrunner",
                    cache_strategy=self._cache, transport=self._transport,
                )  # fmt: skip
            return self._clients[key]

    def _repo_auth(self, repo: str) -> tuple[str, int]:
        """The token, or the App installation of ``repo`` (looked up once)."""
        if not self.app:
            return ("token", 0)
        if repo not in self._installations:
            owner, name = _split(repo)
            url = _path("/repos/{o}/{r}/installation", o=owner, r=name)
            self._installations[repo] = int(self._call(APP, "GET", url).json()["id"])
        return ("installation", self._installations[repo])

    def git_token(self, repo: str) -> str:
        """The credential git fetches ``repo`` with: the token, or in App mode an
        installation token for ``repo`` (POST /app/installations/{id}/access_tokens),
        kept until five minutes before it expires."""
        if not self.app:
            return self.token
        installation = self._repo_auth(repo)[1]
        kept = self._git_tokens.get(installation)
        if kept is not None and kept[1] - 300 > time.time():
            return kept[0]
        url = _path("/app/installations/{i}/access_tokens", i=installation)
        answer = self._call(APP, "POST", url).json()
        self._git_tokens[installation] = (str(answer["token"]), _epoch(str(answer["expires_at"])))
        return str(answer["token"])

    def close(self) -> None:
        """Close the kept connections (idempotent; a later call opens new ones)."""
        with self._lock:
            if self._transport is not None:
                self._transport.shut()
                self._cache = self._transport = None
                self._clients.clear()

    def _call(self, auth: tuple[str, int], method: str, url: str, **kw: Any) -> Any:
        """One request; a failure raises :class:`GitHubError`."""
        try:
            return self._github(auth).request(method, url, **kw)
        except Exception as exc:  # githubkit wraps every transport error
            raise _translate(exc) from exc

    def create_status(self, repo: str, sha: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /repos/{owner}/{repo}/statuses/{sha}; the created status's ``id``."""
        owner, name = _split(repo)
        url = _path("/repos/{o}/{r}/statuses/{s}", o=owner, r=name, s=sha)
        answer = self._call(self._repo_auth(repo), "POST", url, json=dict(body)).json()
        return {"id": answer.get("id")}

    def create_check_run(self, repo: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /repos/{owner}/{repo}/check-runs; the new check run's ``id`` and ``html_url``."""
        owner, name = _split(repo)
        url = _path("/repos/{o}/{r}/check-runs", o=owner, r=name)
        answer = self._call(self._repo_auth(repo), "POST", url, json=dict(body)).json()
        return {"id": int(answer["id"]), "html_url": answer.get("html_url")}

    def update_check_run(
        self, repo: str, check_run_id: int, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PATCH /repos/{owner}/{repo}/check-runs/{id}; the check run's ``id``."""
        owner, name = _split(repo)
        url = _path("/repos/{o}/{r}/check-runs/{i}", o=owner, r=name, i=check_run_id)
        answer = self._call(self._repo_auth(repo), "PATCH", url, json=dict(body)).json()
        return {"id": int(answer["id"]), "html_url": answer.get("html_url")}

    def deliveries(self, since: float, per_page: int = 100) -> Iterator[HookDelivery]:
        """GET /app/hook/deliveries (App mode), newest first, page after page (the
        ``Link: rel="next"`` cursor), until one older than ``since`` (Unix time)."""
        url: str | None = "/app/hook/deliveries"
        params: dict[str, Any] | None = {"per_page": per_page}
        while url is not None:
            response = self._call(APP, "GET", url, params=params)
            for item in response.json():
                delivery = _delivery(item)
                if _epoch(delivery.delivered_at) < since:
                    return
                yield delivery
            url, params = _next_link(response.headers.get("link", "")), None

    def redeliver(self, delivery_id: int) -> None:
        """POST /app/hook/deliveries/{id}/attempts: ask GitHub to deliver it again."""
        url = _path("/app/hook/deliveries/{i}/attempts", i=delivery_id)
        self._call(APP, "POST", url)


def _kept_transport() -> Any:
    """An httpx transport that outlives the client githubkit makes for each call (its
    ``close`` does nothing; ``shut`` closes it), so connections and the TLS context are
    made once, not per request."""
    import httpx

    class KeptTransport(httpx.HTTPTransport):
        def close(self) -> None:
            pass

        def shut(self) -> None:
            super().close()

    return KeptTransport()


def _delivery(item: Mapping[str, Any]) -> HookDelivery:
    return HookDelivery(int(item["id"]), str(item["guid"]), str(item["delivered_at"]),
                        bool(item["redelivery"]), int(item["status_code"]), str(item["event"]))  # fmt: skip


def _epoch(stamp: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _next_link(header: str) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header, or None."""
    for part in header.split(","):
        target, _, rels = part.partition(";")
        if 'rel="next"' in rels.replace(" ", ""):
            return target.strip().strip("<>")
    return None
