"""``ACTIONS_RUNTIME_TOKEN``: the JWT a job's steps present to the toolkit services.

GitHub's token is a JWT whose claims carry the job's scope; the official clients decode
it without checking its signature: ``@actions/artifact`` reads the backend ids from the
``scp`` claim (``Actions.Results:<run backend id>:<job backend id>``), and the cache
service reads the branch scopes from the ``ac`` claim (a JSON list of
``{"Scope": "refs/heads/x", "Permission": n}``, 1 read, 2 write). Ours has the same
claims, signed with HS256 by a key only the run's service holds, so the service can
check every request. Pure (standard library only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

READ, WRITE = 1, 2
ISSUER = "vmrunner"


class TokenError(Exception):
    """A token that is missing, malformed, badly signed or expired."""


@dataclass(frozen=True)
class CacheScope:
    """A ref whose caches the job may read (``READ``) and/or write (``WRITE``)."""

    ref: str
    permission: int


@dataclass(frozen=True)
class Claims:
    """What a token grants: the run and job it belongs to and its cache scopes."""

    run_id: str
    job_id: str
    scopes: tuple[CacheScope, ...] = ()
    expires_at: float = 0.0

    def readable(self) -> tuple[str, ...]:
        """The refs whose caches may be restored, in the order they are searched."""
        return tuple(s.ref for s in self.scopes if s.permission & READ)

    def writable(self) -> str | None:
        """The ref new caches are saved under (the first with write permission)."""
        return next((s.ref for s in self.scopes if s.permission & WRITE), None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cache_scopes(
    ref: str, default_ref: str | None, base_ref: str | None = None
) -> tuple[CacheScope, ...]:
    """GitHub's scopes for a run on ``ref``: its own (read and write), then the base
    branch of a pull request and the default branch (read only), without repeats."""
    scopes = [CacheScope(ref, READ | WRITE)] if ref else []
    for other in (base_ref, default_ref):
        if other and all(s.ref != other for s in scopes):
            scopes.append(CacheScope(other, READ))
    return tuple(scopes)


def issue(key: bytes, claims: Claims) -> str:
    """A signed token carrying ``claims`` (valid until ``claims.expires_at``)."""
    header = {"typ": "JWT", "alg": "HS256"}
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "vmrunner-toolkit",
        "nbf": int(time.time()) - 60,
        "exp": int(claims.expires_at),
        "scp": f"Actions.GenericRead:{claims.run_id} Actions.Results:{claims.run_id}:{claims.job_id}",
        "ac": json.dumps([{"Scope": s.ref, "Permission": s.permission} for s in claims.scopes]),
    }
    signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(body).encode())
    return signing + "." + _b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())


def verify(key: bytes, token: str, now: float | None = None) -> Claims:
    """The claims of ``token`` if ``key`` signed it and it has not expired; raises
    :class:`TokenError` otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("the token is not a JWT")
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        header, sig = json.loads(_unb64(parts[0])), _unb64(parts[2])
        body = json.loads(_unb64(parts[1]))
    except ValueError as exc:
        raise TokenError(f"the token is malformed: {exc}") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise TokenError("the token is not signed with HS256")
    if not hmac.compare_digest(sig, expected):
        raise TokenError("the token's signature is not valid")
    return _claims(body, time.time() if now is None else now)


def _claims(body: Any, now: float) -> Claims:
    if not isinstance(body, dict) or float(body.get("exp", 0)) < now:
        raise TokenError("the token has expired")
    ids = _results_scope(str(body.get("scp", "")).split(" "))
    try:
        raw = json.loads(str(body.get("ac", "[]")))
        scopes = tuple(CacheScope(str(s["Scope"]), int(s["Permission"])) for s in raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenError(f"the token's cache scopes are malformed: {exc}") from exc
    return Claims(ids[0], ids[1], scopes, float(body["exp"]))


def _results_scope(scopes: Sequence[str]) -> tuple[str, str]:
    for scope in scopes:
        parts = scope.split(":")
        if parts[0] == "Actions.Results" and len(parts) == 3:
            return parts[1], parts[2]
    raise TokenError("the token has no Actions.Results scope")
