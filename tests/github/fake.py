"""A fake GitHub for tests: a real HTTP server on 127.0.0.1 that validates every request
against GitHub's own OpenAPI description and answers with shapes from it.

Every request is matched to an operation (method and path template), its path and query
parameters and its JSON body are validated against the operation's schemas, and its
credentials are checked (an App JWT signed with the test key for ``/app/...`` and the
installation lookup; a known token or installation token elsewhere). A request that fails
any check is recorded in ``.violations`` and answered 422 (401 for credentials). Answers
start from the document's examples, carry what the request set, and are validated against
the operation's response schema too (a fake that answers wrongly is a violation as well).

Implemented: commit statuses, check runs (create, update), the repository's App
installation, installation access tokens, the App's webhook deliveries (list, paginated
with ``Link``; redeliver). Faults: ``fail_next``, ``rate_limit_next``, ``retry_after_next``,
``hang_next``. Everything else in the document answers 501 and is a violation.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt

from .openapi import Spec, spec

Answer = tuple[int, Any, dict[str, str]]


def iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Seen:
    """One request the fake received (``status`` is what it answered)."""

    method: str
    path: str
    operation: str | None
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    status: int = 0


@dataclass
class Fault:
    status: int
    headers: dict[str, str]
    message: str
    match: str | None
    hang_s: float = 0.0


@dataclass
class CheckRun:
    """A check run as the fake keeps it: its current fields and every body sent to it."""

    id: int
    repo: str
    head_sha: str
    fields: dict[str, Any]
    annotations: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.fields.get(key)


class FakeGitHub:
    """See the module docstring. ``url`` is the API base (``prefix`` makes it look like
    GHES: ``http://127.0.0.1:port/api/v3``). ``app_id`` and ``public_key_pem`` verify App
    JWTs; ``tokens`` are the accepted PATs; ``installations`` maps owner -> installation id."""

    def __init__(
        self, *, app_id: str = "", public_key_pem: str = "", tokens: tuple[str, ...] = (),
        installations: dict[str, int] | None = None, prefix: str = "",
    ) -> None:  # fmt: skip
        self.spec: Spec = spec()
        self.app_id, self.public_key_pem, self.prefix = app_id, public_key_pem, prefix.rstrip("/")
        self.tokens: set[str] = set(tokens)
        self.installations = dict(installations or {})
        self.installation_tokens: dict[str, int] = {}
        self.requests: list[Seen] = []
        self.violations: list[str] = []
        self.hook_deliveries: list[dict[str, Any]] = []
        self.redelivered: list[int] = []
        self._statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._checks: dict[int, CheckRun] = {}
        self._faults: list[Fault] = []
        self._ids = itertools.count(1001)
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    def start(self) -> FakeGitHub:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    # --- what tests read -------------------------------------------------------------
    def statuses(self, repo: str, sha: str) -> list[dict[str, Any]]:
        """The statuses created on ``repo`` at ``sha``, in the order they arrived."""
        with self._lock:
            return [dict(s) for s in self._statuses.get((repo, sha), [])]

    def latest_statuses(self, repo: str, sha: str) -> dict[str, str]:
        """context -> its last state (what GitHub shows on the commit)."""
        return {s.get("context", "default"): s["state"] for s in self.statuses(repo, sha)}

    def check_runs(self, repo: str, sha: str) -> list[CheckRun]:
        with self._lock:
            return [c for c in self._checks.values() if (c.repo, c.head_sha) == (repo, sha)]

    def add_delivery(
        self, guid: str, status_code: int, *, event: str = "push", redelivery: bool = False,
        delivered_at: float | None = None,
    ) -> int:  # fmt: skip
        """Record an attempt GitHub made to deliver a webhook; its id (newest first in lists)."""
        with self._lock:
            item = {"id": next(self._ids), "guid": guid, "redelivery": redelivery,
                    "delivered_at": iso(time.time() if delivered_at is None else delivered_at),
                    "duration": 0.1, "status": "OK" if status_code < 300 else "failed to connect",
                    "status_code": status_code, "event": event, "action": None,
                    "installation_id": None, "repository_id": None, "throttled_at": None}  # fmt: skip
            self.hook_deliveries.append(item)
            return int(item["id"])

    # --- faults ------------------------------------------------------------------------
    def _fault(self, n: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    def fail_next(self, n: int = 1, status: int = 502, match: str | None = None) -> None:
        """The next ``n`` requests (whose path contains ``match``) are answered ``status``."""
        self._fault(n, Fault(status, {}, "Server Error" if status >= 500 else "Failed", match))

    def rate_limit_next(self, n: int = 1, reset_in_s: float = 1.0, match: str | None = None) -> int:
        """The next ``n`` requests get GitHub's primary rate limit answer (403,
        ``x-ratelimit-remaining: 0``); returns the ``x-ratelimit-reset`` epoch used."""
        reset = int(time.time() + reset_in_s) + 1
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                   "x-ratelimit-reset": str(reset), "x-ratelimit-resource": "core"}  # fmt: skip
        self._fault(n, Fault(403, headers, "API rate limit exceeded for installation.", match))
        return reset

    def retry_after_next(self, n: int = 1, seconds: int = 1, match: str | None = None) -> None:
        """The next ``n`` requests get a secondary rate limit (403 with ``Retry-After``)."""
        self._fault(n, Fault(403, {"retry-after": str(seconds)},
                             "You have exceeded a secondary rate limit.", match))  # fmt: skip

    def hang_next(self, n: int = 1, seconds: float = 5.0, match: str | None = None) -> None:
        """The next ``n`` requests are answered only after ``seconds`` (client timeouts)."""
        self._fault(n, Fault(0, {}, "", match, hang_s=seconds))

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.match is None or fault.match in path:
                    return self._faults.pop(i)
        return None

    # --- serving -----------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        parts = urlsplit(target)
        path, query = parts.path, dict(parse_qsl(parts.query))
        body = json.loads(raw) if raw else None
        seen = Seen(method, path, None, query, body, headers)
        with self._lock:
            self.requests.append(seen)
        answer = self._answer(seen)
        seen.status = answer[0]
        return answer

    def _violation(self, seen: Seen, why: str, status: int = 422) -> Answer:
        with self._lock:
            self.violations.append(f"{seen.method} {seen.path}: {why}")
        return (
            status,
            {"message": why[:1000], "documentation_url": "https://docs.github.com/rest"},
            {},
        )

    def _answer(self, seen: Seen) -> Answer:
        if not seen.path.startswith(self.prefix + "/"):
            return self._violation(seen, f"outside the API prefix {self.prefix!r}", 404)
        path = seen.path[len(self.prefix) :]
        found = self.spec.match(seen.method.lower(), path)
        if found is None:
            return self._violation(seen, "no such operation in GitHub's REST description", 404)
        template, params = found
        op = self.spec.operation(template, seen.method.lower())
        seen.operation = op.get("operationId")
        problems = self._problems(op, params, seen)
        if problems:
            return self._violation(seen, "; ".join(problems))
        fault = self._take_fault(path)
        if fault is not None and fault.hang_s:
            time.sleep(fault.hang_s)
        elif fault is not None:
            return fault.status, {"message": fault.message, "documentation_url": "x"}, fault.headers
        who = self._authorise(template, seen)
        if who is None:
            return self._violation(seen, "bad or missing credentials", 401)
        handler = HANDLERS.get(str(seen.operation))
        if handler is None:
            return self._violation(seen, f"{seen.operation} is not implemented by the fake", 501)
        status, answer, extra = handler(self, params, seen)
        self._check_answer(op, status, answer, seen)
        return status, answer, extra

    def _problems(self, op: dict[str, Any], params: dict[str, str], seen: Seen) -> list[str]:
        problems = self.spec.check_parameters(op, "path", params)
        problems += self.spec.check_parameters(op, "query", seen.query)
        required, schema = self.spec.body_schema(op)
        if seen.body is None and required:
            problems.append("the request body is required")
        elif seen.body is not None and schema is None:
            problems.append("a body was sent to an operation that takes none")
        elif seen.body is not None:
            if "json" not in seen.headers.get("content-type", ""):
                problems.append("the body is not sent as application/json")
            problems += [f"body {e}" for e in self.spec.errors(schema, seen.body)]
        return problems

    def _check_answer(self, op: dict[str, Any], status: int, answer: Any, seen: Seen) -> None:
        schema, _ = self.spec.response(op, status)
        if schema is not None and 200 <= status < 300:
            for error in self.spec.errors(schema, answer):
                with self._lock:
                    self.violations.append(f"the fake's own answer to {seen.operation}: {error}")

    def _authorise(self, template: str, seen: Seen) -> str | None:
        """Who is calling: ``app`` (a valid JWT where one is needed), a token, or None."""
        scheme, _, credential = seen.headers.get("authorization", "").partition(" ")
        if template.startswith("/app") or template == "/repos/{owner}/{repo}/installation":
            return "app" if scheme.lower() == "bearer" and self._jwt_ok(credential) else None
        with self._lock:
            if credential in self.tokens:
                return credential
            installation = self.installation_tokens.get(credential)
        owner = (
            seen.path[len(self.prefix) :].split("/")[2] if template.startswith("/repos/") else ""
        )
        if installation is not None and self.installations.get(owner) == installation:
            return credential
        return None

    def _jwt_ok(self, token: str) -> bool:
        if not self.public_key_pem:
            return False
        try:
            claims = jwt.decode(token, self.public_key_pem, algorithms=["RS256"],
                                options={"require": ["iat", "exp", "iss"]})  # fmt: skip
        except jwt.PyJWTError:
            return False
        return str(claims["iss"]) == self.app_id and claims["exp"] - claims["iat"] <= 660

    def new_id(self) -> int:
        return next(self._ids)


Handler = Callable[[FakeGitHub, dict[str, str], Seen], Answer]


def _example(fake: FakeGitHub, template: str, method: str, status: int) -> dict[str, Any]:
    _, example = fake.spec.response(fake.spec.operation(template, method), status)
    return dict(example or {})


def _create_status(fake: FakeGitHub, params: dict[str, str], seen: Seen) -> Answer:
    repo, sha = f"{params['owner']}/{params['repo']}", params["sha"]
    answer = _example(fake, "/repos/{owner}/{repo}/statuses/{sha}", "post", 201)
    now = iso(time.time())
    answer.update({"id": fake.new_id(), "state": seen.body["state"],
                   "description": seen.body.get("description"),
                   "target_url": seen.body.get("target_url"),
                   "context": seen.body.get("context", "default"), "created_at": now,
                   "updated_at": now})  # fmt: skip
    with fake._lock:
        fake._statuses.setdefault((repo, sha), []).append(dict(seen.body))
    return 201, answer, {}


def _check_answer(fake: FakeGitHub, run: CheckRun, status: int, method: str) -> Answer:
    template = "/repos/{owner}/{repo}/check-runs" + ("/{check_run_id}" if method == "patch" else "")
    answer = _example(fake, template, method, status)
    output = dict(answer.get("output") or {})
    given = run.fields.get("output") or {}
    output.update({"title": given.get("title"), "summary": given.get("summary"),
                   "text": given.get("text"), "annotations_count": len(run.annotations)})  # fmt: skip
    answer.update({k: run.fields.get(k) for k in ("name", "status", "conclusion", "external_id",
                                                  "details_url", "started_at", "completed_at")})  # fmt: skip
    answer.update({"id": run.id, "head_sha": run.head_sha, "output": output,
                   "html_url": f"https://github.com/{run.repo}/runs/{run.id}"})  # fmt: skip
    return status, answer, {}


def _apply(run: CheckRun, body: dict[str, Any]) -> None:
    run.history.append(body)
    fields = {k: v for k, v in body.items() if k != "output"}
    if "conclusion" in body:
        fields["status"] = "completed"
    run.fields.update(fields)
    if "output" in body:
        output = dict(body["output"])
        run.annotations.extend(output.pop("annotations", []))
        run.fields["output"] = output


def _create_check(fake: FakeGitHub, params: dict[str, str], seen: Seen) -> Answer:
    run = CheckRun(fake.new_id(), f"{params['owner']}/{params['repo']}", seen.body["head_sha"],
                   {"status": "queued", "conclusion": None, "external_id": None, "details_url": None,
                    "started_at": None, "completed_at": None})  # fmt: skip
    _apply(run, seen.body)
    with fake._lock:
        fake._checks[run.id] = run
    return _check_answer(fake, run, 201, "post")


def _update_check(fake: FakeGitHub, params: dict[str, str], seen: Seen) -> Answer:
    run = fake._checks.get(int(params["check_run_id"]))
    if run is None or run.repo != f"{params['owner']}/{params['repo']}":
        return fake._violation(seen, "no such check run", 404)
    with fake._lock:
        _apply(run, seen.body)
    return _check_answer(fake, run, 200, "patch")


def _installation(fake: FakeGitHub, params: dict[str, str], seen: Seen) -> Answer:
    installation = fake.installations.get(params["owner"])
    if installation is None:
        return 404, {"message": "Not Found", "documentation_url": "x"}, {}
    answer = _example(fake, "/repos/{owner}/{repo}/installation", "get", 200)
    answer.update({"id": installation, "app_id": int(fake.app_id)})
    return 200, answer, {}


def _access_token(fake: FakeGitHub, params: dict[str, str], seen: Seen) -> Answer:
    installation = int(params["installation_id"])
    if installation not in fake.installations.values():
        return 404, {"message": "Not Found", "documentation_url": "x"}, {}
    token = f"ghs_fake{fake.new_id()}"
    with fake._lock:
        fake.installation_tokens[token] = installation
    answer = _example(fake, "/app/installations/{installation_id}/access_tokens", "post", 201)
    answer.update({"token": token, "expires_at": iso(time.time() + 3600)})
    return 201, answer, {}


def _deliveries(fake: FakeGitHub, params: dict[str, str], seen: Seen) -> Answer:
    per_page = int(seen.query.get("per_page", "30"))
    with fake._lock:
        items = sorted(
            fake.hook_deliveries, key=lambda d: (d["delivered_at"], d["id"]), reverse=True
        )
    start = int(seen.query.get("cursor", "0"))
    page = items[start : start + per_page]
    headers = {}
    if start + per_page < len(items):
        url = f"{fake.url}/app/hook/deliveries?per_page={per_page}&cursor={start + per_page}"
        headers["link"] = f'<{url}>; rel="next"'
    return 200, page, headers


def _redeliver(fake: FakeGitHub, params: dict[str, str], seen: Seen) -> Answer:
    delivery_id = int(params["delivery_id"])
    with fake._lock:
        known = [d for d in fake.hook_deliveries if d["id"] == delivery_id]
        if known:
            fake.redelivered.append(delivery_id)
    if not known:
        return 404, {"message": "Not Found", "documentation_url": "x"}, {}
    return 202, {}, {}


HANDLERS: dict[str, Handler] = {
    "repos/create-commit-status": _create_status,
    "checks/create": _create_check,
    "checks/update": _update_check,
    "apps/get-repo-installation": _installation,
    "apps/create-installation-access-token": _access_token,
    "apps/list-webhook-deliveries": _deliveries,
    "apps/redeliver-webhook-delivery": _redeliver,
}


def _handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms)

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, answer, extra = fake.handle(self.command, self.path, headers, raw)
            except Exception as exc:  # noqa: BLE001 (a fake bug: said to the test, answered 500)
                fake.violations.append(f"the fake failed on {self.command} {self.path}: {exc!r}")
                status, answer, extra = 500, {"message": repr(exc)}, {}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
