"""The MCP server over streamable HTTP, for ``vmrunner serve`` (mounted at ``/mcp`` by
:mod:`vmrunner.api.mcp`).

The same tools as ``vmrunner mcp`` (:func:`vmrunner.mcp.server.mcp_server`), served by the
SDK's ``StreamableHTTPSessionManager`` in **stateless** mode: every POST gets a fresh
transport and no session is kept, so any host behind a load balancer can answer any
request, with no ``initialize`` needed first. Responses are server-sent event streams
(not plain JSON), so a long tool call can send progress notifications before its result.

Authorization: the HTTP edge authenticates the bearer token and puts the
:class:`~vmrunner.services.tokens.TokenInfo` in the ASGI scope under :data:`TOKEN_KEY`;
the :func:`require_write` middleware refuses a tool that runs or cancels things
(:data:`WRITE_TOOLS`) unless that token has the ``write`` scope (a tool error naming the
scope). Reading tools need ``read``, which every live token has. A call without a token
in the scope is refused too (fail closed).

Repository root: none. A server has no checkout of the caller's repository, so tools
refuse repository paths (``path``, ``files``, local flakes, ``run_workflow``) with a
tool error saying to send the recipe as text (:data:`vmrunner.mcp.common.NO_CHECKOUT`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, TextContent

from vmrunner.mcp.bounded import DEFAULT_BUDGET
from vmrunner.mcp.common import App
from vmrunner.mcp.server import mcp_server

TOKEN_KEY = "vmrunner.token"
WRITE_TOOLS = frozenset({"test_configuration", "run_workflow", "exec_command", "cancel_run"})


@dataclass(frozen=True)
class HttpMcp:
    """The MCP server for HTTP and its stateless session manager. ASGI requests go to
    ``manager.handle_request``; ``manager.run()`` must be entered (once) around serving."""

    server: MCPServer[Any]
    manager: StreamableHTTPSessionManager
    app: App


def http_server(services: Any, budget: int = DEFAULT_BUDGET) -> HttpMcp:
    """The MCP server over ``services`` (a :class:`~vmrunner.services.core.Services`,
    owned by the caller), with no repository root and the write-scope check.

    DNS-rebinding protection (a Host/Origin allow-list) is off: the server is reached by
    whatever name its operator gives it, and every request must carry a bearer token,
    which a browser tricked by DNS rebinding cannot add."""
    app = App(services.settings, None, services, budget)
    server = mcp_server(app, middleware=[require_write])
    # called for its session manager (the public way to make one); its Starlette app,
    # whose lifespan would run the manager, is not used: run_server runs the manager
    server.streamable_http_app(
        stateless_http=True, json_response=False,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )  # fmt: skip
    return HttpMcp(server, server.session_manager, app)


def token_scope(ctx: ServerRequestContext[Any, Any]) -> Any:
    """The token the HTTP edge put in this request's ASGI scope, or None."""
    request = ctx.request
    scope = getattr(request, "scope", None)
    return scope.get(TOKEN_KEY) if isinstance(scope, dict) else None


def refusal(tool: str, token: Any) -> CallToolResult:
    """The tool error for a call to ``tool`` whose token lacks the write scope."""
    has = f"has scope {token.scope!r}" if token is not None else "is missing"
    text = (
        f"{tool} runs or cancels things and needs a token with scope 'write'; this "
        f"request's token {has} (vmrunner token create --scope write)"
    )
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


async def require_write(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: a ``tools/call`` of a :data:`WRITE_TOOLS` tool goes on only
    with a write token; everything else goes on unchanged."""
    if ctx.method == "tools/call":
        name = (ctx.params or {}).get("name")
        if name in WRITE_TOOLS:
            token = token_scope(ctx)
            if token is None or not token.allows("write"):
                return refusal(str(name), token)
    return await call_next(ctx)
