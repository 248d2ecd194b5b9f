"""The MCP server: vmrunner's tools for coding agents, over stdio (and, with the same
tools, over streamable HTTP in ``vmrunner serve``: :mod:`vmrunner.mcp.http`).

Built with the official ``mcp`` SDK (``MCPServer``). Tools only (no resources or
prompts): each has a typed input schema and an output schema, and returns structured
content (valid against that schema) with a short text for people beside it. The tools
call the same service layer as the CLI; they run things and return results, never a
shell command for the agent to run instead. Bad arguments are a tool error naming the
argument; nothing an agent sends stops the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp.server.context import ServerMiddleware
from mcp.server.mcpserver import MCPServer

from vmrunner.config import Settings
from vmrunner.mcp.bounded import DEFAULT_BUDGET
from vmrunner.mcp.common import App
from vmrunner.mcp.tools_learn import learn_tools
from vmrunner.mcp.tools_runs import run_tools
from vmrunner.services.core import Services

INSTRUCTIONS = (
    "vmrunner tests system configurations and CI workflows in throwaway VMs. Loop: "
    "test_configuration (or run_workflow, exec_command), read the result; on failure "
    "explain_failure names the failing phase or step, the error and a candidate fix; change "
    "the configuration and test again, then compare_runs shows what changed. get_logs reads "
    "more of a run's log than a result shows."
)


def build_server(
    settings: Settings, root: Path, budget: int = DEFAULT_BUDGET
) -> tuple[MCPServer[Any], App]:
    """The MCP server with every tool, and the state the tools share (close
    ``app.services`` when done)."""
    app = App(settings, root.resolve(), Services(settings), budget)
    return mcp_server(app), app


def mcp_server(app: App, middleware: Sequence[ServerMiddleware[Any]] = ()) -> MCPServer[Any]:
    """The MCP server with every tool bound to ``app``: the one tool registry of both
    transports (stdio here, streamable HTTP in :mod:`vmrunner.mcp.http`, which adds
    ``middleware``)."""
    tools = [*run_tools(app), *learn_tools(app)]
    return MCPServer(
        "vmrunner", title="vmrunner", instructions=INSTRUCTIONS, version=_version(), tools=tools,
        log_level="WARNING", middleware=middleware,
    )  # fmt: skip


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vmrunner")
    except PackageNotFoundError:
        return "0"


def serve_stdio(settings: Settings, root: Path, budget: int = DEFAULT_BUDGET) -> None:
    """Serve MCP on stdin/stdout until the client closes it. First reaps what a killed
    vmrunner left behind, as every command that runs things does."""
    import anyio

    from vmrunner.services.machines import gc

    gc(settings)
    server, app = build_server(settings, root, budget)
    try:
        app.services.reap_interrupted()
        anyio.run(server.run_stdio_async)
    finally:
        app.services.close()
