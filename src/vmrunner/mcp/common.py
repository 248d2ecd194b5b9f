"""What every MCP tool shares: the :class:`App` state, turning service errors into tool
errors that name the argument, replies with structured content and text, ordered
progress notifications, and tool registration with a published output schema."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent

from vmrunner.config import Settings
from vmrunner.errors import ConfigError, UserInputError, VmrunnerError
from vmrunner.mcp.bounded import DEFAULT_BUDGET
from vmrunner.services.core import Services

_FLAG_RE = re.compile(r"--([a-z][a-z0-9-]*)")


@dataclass
class App:
    """What every tool shares: the settings, the repository root, the services and the
    byte budget of a result."""

    settings: Settings
    root: Path
    services: Services
    budget: int = DEFAULT_BUDGET

    def in_repo(self, path: str, argument: str) -> Path:
        """``path`` (relative to the repository root, or absolute inside it) as an
        existing path; raises ``ToolError`` naming ``argument`` otherwise."""
        full = (self.root / path).resolve()
        if not full.is_relative_to(self.root.resolve()):
            raise ToolError(
                f"argument {argument!r}: {path!r} is outside the repository {self.root}"
            )
        if not full.exists():
            raise ToolError(f"argument {argument!r}: {path!r} does not exist in {self.root}")
        return full


def argument_message(exc: VmrunnerError) -> str:
    """A service error as an agent reads it: CLI flags (``--boot-timeout``) become the
    tool's argument names (``boot_timeout``)."""
    return _FLAG_RE.sub(lambda m: m.group(1).replace("-", "_"), str(exc))


async def guarded(body: Awaitable[CallToolResult]) -> CallToolResult:
    """Await a tool's body: bad input becomes a ``ToolError`` naming the argument, a
    harness failure a ``ToolError`` saying so (the server keeps serving)."""
    try:
        return await body
    except (ConfigError, UserInputError) as exc:
        message = argument_message(exc).replace("(see 'vmrunner runs list')", "(call list_runs)")
        raise ToolError(message) from exc
    except VmrunnerError as exc:
        raise ToolError(f"vmrunner failed (harness error, not your configuration): {exc}") from exc


def reply(text: str, data: dict[str, Any]) -> CallToolResult:
    """A tool result: ``data`` as structured content, ``text`` for people beside it."""
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


class Progress:
    """Progress notifications for one tool call, sent in order from synchronous callbacks
    (``put``) by a pump task. Each value is larger than the one before, as MCP asks."""

    def __init__(self, ctx: Context, total: float | None) -> None:
        self.ctx, self.total = ctx, total
        self.queue: asyncio.Queue[tuple[float, str] | None] = asyncio.Queue()
        self.last = 0.0

    def put(self, value: float, message: str) -> None:
        self.last = max(value, self.last + 0.001)
        self.queue.put_nowait((self.last, message))

    async def pump(self) -> None:
        while (item := await self.queue.get()) is not None:
            with contextlib.suppress(Exception):  # a gone client must not fail the run
                await self.ctx.report_progress(item[0], self.total, item[1])


@contextlib.asynccontextmanager
async def progress(ctx: Context, total: float | None) -> AsyncIterator[Progress]:
    """A :class:`Progress` whose notifications are all sent when the block ends."""
    prog = Progress(ctx, total)
    task = asyncio.ensure_future(prog.pump())
    try:
        yield prog
    finally:
        prog.queue.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout=10)


ToolFn = Callable[..., Awaitable[CallToolResult]]


def make_tool(fn: ToolFn, output_schema: dict[str, Any], title: str) -> Tool:
    """An SDK tool from ``fn`` (its signature is the input schema, its docstring the
    description) that publishes ``output_schema``."""
    tool = Tool.from_function(fn, name=fn.__name__, title=title)
    tool.fn_metadata.output_schema = output_schema
    return tool
