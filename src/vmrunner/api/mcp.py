"""``/mcp``: vmrunner's MCP server (:mod:`vmrunner.mcp.http`) over streamable HTTP,
behind the API's bearer tokens.

A request without a live token (none, malformed, unknown or revoked) is answered 401
with the API's JSON error and ``WWW-Authenticate: Bearer``, before the MCP server sees
it. A live token goes on to the MCP server in the ASGI scope (``TOKEN_KEY``); the tools
that run or cancel things check it has the ``write`` scope there. The session
manager's ``run()`` is entered by :func:`vmrunner.services.server.run_server`, which
owns the event loop (``app.state.mcp.manager``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vmrunner.api.auth import token_of
from vmrunner.api.errors import error_response
from vmrunner.mcp.http import TOKEN_KEY, http_server

PATH = "/mcp"


class McpEndpoint:
    """ASGI app: authenticate the bearer token, then hand the request to ``inner`` with
    the token in its scope."""

    def __init__(self, services: Any, inner: ASGIApp) -> None:
        self.services, self.inner = services, inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = await token_of(self.services, Headers(scope=scope).get("authorization"))
        if token is None:
            answer = error_response(
                401, "unauthorized", "a valid bearer token is needed (vmrunner token create)"
            )
            await answer(scope, receive, send)
            return
        await self.inner({**scope, TOKEN_KEY: token}, receive, send)


def mount(app: FastAPI, services: Any) -> None:
    """Add ``/mcp`` to ``app``; the MCP server is kept as ``app.state.mcp``."""
    mcp = http_server(services)
    app.state.mcp = mcp
    app.router.routes.append(Route(PATH, McpEndpoint(services, mcp.manager.handle_request)))
