"""Bearer tokens of the HTTP API: created, listed, revoked, and checked per request.

A token's secret is ``vmr_`` and 32 random bytes (URL-safe base64); it is shown once, at
creation. Only its SHA-256 is kept (tokens are high-entropy, so a plain hash is enough:
nothing to brute-force). ``write`` scope implies ``read``. A revoked token never
authenticates again. ``last_used_at`` is updated at most once a minute per token (a
write per request would serialise every read on SQLite).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from sqlalchemy import Connection, Row, insert, or_, select, update

from vmrunner.errors import ConfigError, UserInputError
from vmrunner.store.models import api_tokens as t

SCOPES = ("read", "write")
PREFIX = "vmr_"
TOUCH_EVERY_S = 60.0


@dataclass(frozen=True)
class TokenInfo:
    """A kept token, without its secret."""

    id: str
    name: str
    scope: str
    created_at: float
    last_used_at: float | None
    revoked: bool

    def allows(self, scope: str) -> bool:
        """Whether this token may do what ``scope`` needs (write implies read)."""
        return not self.revoked and (self.scope == scope or self.scope == "write")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _info(row: Row[Any]) -> TokenInfo:
    m = row._mapping
    return TokenInfo(str(m["id"]), str(m["name"]), str(m["scope"]), float(m["created_at"]),
                     m["last_used_at"], bool(m["revoked"]))  # fmt: skip


def digest(secret: str) -> str:
    """The kept form of a token's secret."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(services: Any, name: str | None, scope: str) -> tuple[TokenInfo, str]:
    """Keep a new token of ``scope``; returns it and its secret (shown once, never kept).
    Raises ``ConfigError`` for an unknown scope or a name in use."""
    if scope not in SCOPES:
        raise ConfigError(f"--scope must be read or write, got {scope!r}")
    token_id = secrets.token_hex(6)
    name = (f"token-{token_id}" if name is None else name).strip()
    if not name or len(name) > 255:
        raise ConfigError("--name must be 1 to 255 characters")
    secret = PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    row = {"id": token_id, "name": name, "scope": scope, "hash": digest(secret),
           "created_at": now, "last_used_at": None, "revoked": False}  # fmt: skip

    def write(conn: Connection) -> None:
        if conn.execute(select(t.c.id).where(t.c.name == name)).first() is not None:
            raise ConfigError(f"a token named {name!r} exists already (see 'vmrunner token list')")
        conn.execute(insert(t).values(**row))

    services.store.write(write)
    return TokenInfo(token_id, name, scope, now, None, False), secret


def list_tokens(services: Any) -> list[TokenInfo]:
    """Every kept token (revoked ones too), oldest first."""
    with services.store.read() as conn:
        return [_info(r) for r in conn.execute(select(t).order_by(t.c.created_at, t.c.id))]


def revoke_token(services: Any, id_or_name: str) -> TokenInfo:
    """Revoke the token with this id or name (idempotent); raises ``UserInputError`` when
    there is none."""

    def write(conn: Connection) -> TokenInfo:
        match = or_(t.c.id == id_or_name, t.c.name == id_or_name)
        row = conn.execute(select(t).where(match)).first()
        if row is None:
            raise UserInputError(f"no token {id_or_name!r} (see 'vmrunner token list')")
        conn.execute(update(t).where(t.c.id == row.id).values(revoked=True))
        return _info(conn.execute(select(t).where(t.c.id == row.id)).one())

    result: TokenInfo = services.store.write(write)
    return result


def authenticate(services: Any, bearer: str) -> TokenInfo | None:
    """The live token whose secret is ``bearer``, or None (unknown, malformed, revoked).
    The kept hash is compared in constant time."""
    if not bearer.startswith(PREFIX) or len(bearer) > 200:
        return None
    wanted = digest(bearer)
    with services.store.read() as conn:
        row = conn.execute(select(t).where(t.c.hash == wanted)).first()
    if row is None or not hmac.compare_digest(str(row.hash), wanted) or row.revoked:
        return None
    info = _info(row)
    now = time.time()
    if info.last_used_at is None or now - info.last_used_at > TOUCH_EVERY_S:
        services.store.write(
            lambda c: c.execute(update(t).where(t.c.id == info.id).values(last_used_at=now))
        )
        info = replace(info, last_used_at=now)
    return info
