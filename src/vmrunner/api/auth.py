"""Bearer-token authentication of ``/api/v1``: ``read`` scope for GETs, ``write`` for
POSTs (write implies read). A missing, unknown or revoked token: 401; a read token on a
write route: 403. Both answered as JSON errors by ``api.errors``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from vmrunner.services.tokens import TokenInfo, authenticate

bearer = HTTPBearer(auto_error=False, description="A token from 'vmrunner token create'.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def token_of(services: Any, header: str | None) -> TokenInfo | None:
    """The live token an ``Authorization: Bearer`` header value names, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return await run_in_threadpool(authenticate, services, value.strip())


def require(scope: str) -> Callable[..., Awaitable[TokenInfo]]:
    """A dependency: the request's token, which must allow ``scope``."""

    async def check(request: Request, creds: Credentials) -> TokenInfo:
        services = request.app.state.services
        token = None
        if creds is not None:
            token = await run_in_threadpool(authenticate, services, creds.credentials)
        if token is None:
            raise HTTPException(401, "a valid bearer token is needed (vmrunner token create)")
        if not token.allows(scope):
            raise HTTPException(403, f"this token has scope {token.scope!r}; {scope!r} is needed")
        return token

    return check


ReadToken = Annotated[TokenInfo, Depends(require("read"))]
WriteToken = Annotated[TokenInfo, Depends(require("write"))]
