"""The dashboard's cookie session: who logged in (a token's id and scope, never the
token itself) and the session's CSRF token, signed with HMAC-SHA256.

Cookie value: ``base64url(json) "." base64url(hmac(key, base64url(json)))``. A value
whose signature does not match, that is malformed or whose ``exp`` passed reads as no
session. The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/`` (and ``Secure``
when the request came over https). Every page re-checks the token (a revoked token ends
the session); every POST checks the CSRF token in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

COOKIE = "vmrunner_session"
LIFETIME_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    """A logged-in session: the token's id, name and scope, and the CSRF token."""

    token_id: str
    name: str
    scope: str
    csrf: str
    exp: float

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


def new_session(token_id: str, name: str, scope: str, now: float | None = None) -> Session:
    """A fresh session for a token, with a new random CSRF token."""
    exp = (time.time() if now is None else now) + LIFETIME_S
    return Session(token_id, name, scope, secrets.token_urlsafe(24), exp)


def encode(key: bytes, session: Session) -> str:
    """The signed cookie value of ``session``."""
    body = _b64(json.dumps(session.__dict__, separators=(",", ":")).encode())
    return f"{body}.{_mac(key, body)}"


def decode(key: bytes, value: str | None, now: float | None = None) -> Session | None:
    """The session in cookie ``value``; None when absent, forged, malformed or expired."""
    if not value or value.count(".") != 1:
        return None
    body, mac = value.split(".")
    if not hmac.compare_digest(mac.encode(), _mac(key, body).encode()):
        return None
    try:
        data: Any = json.loads(_unb64(body))
        session = Session(**{k: data[k] for k in ("token_id", "name", "scope", "csrf", "exp")})
    except (ValueError, TypeError, KeyError):
        return None
    return session if session.exp > (time.time() if now is None else now) else None


def csrf_ok(session: Session | None, given: str | None) -> bool:
    """Whether ``given`` is the session's CSRF token (constant-time)."""
    if session is None or not given:
        return False
    return hmac.compare_digest(session.csrf.encode(), given.encode())
