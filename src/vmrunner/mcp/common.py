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
_SCHEME_RE = re.compile(r"^([a-z][a-z0-9+.-]*):")
_REGISTRY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
NO_CHECKOUT = (
    "this MCP server is 'vmrunner serve' over HTTP and has no checkout of your repository, "
    "so it takes no repository paths: send a Debian recipe as YAML text in 'recipe' (its "
    "files are inline), a remote flake reference (e.g. 'github:owner/repo'), or run "
    "'vmrunner mcp' (stdio) in your checkout for workflows and repository files"
)


@dataclass
class App:
    """What every tool shares: the settings, the repository root (None over HTTP: a
    server has no checkout of the caller's repository), the services and the byte
    budget of a result."""

    settings: Settings
    root: Path | None
    services: Services
    budget: int = DEFAULT_BUDGET

    def checkout(self, argument: str) -> Path:
        """The repository root; raises ``ToolError`` naming ``argument`` when there is
        none (over HTTP)."""
        if self.root is None:
            raise ToolError(f"argument {argument!r}: {NO_CHECKOUT}")
        return self.root

    def in_repo(self, path: str, argument: str) -> Path:
        """``path`` (relative to the repository root, or absolute inside it) as an
        existing path; raises ``ToolError`` naming ``argument`` otherwise (and always
        over HTTP, where there is no repository)."""
        root = self.checkout(argument)
        full = (root / path).resolve()
        if not full.is_relative_to(root.resolve()):
            raise ToolError(f"argument {argument!r}: {path!r} is outside the repository {root}")
        if not full.exists():
            raise ToolError(f"argument {argument!r}: {path!r} does not exist in {root}")
        return full

    def flake_ref(self, flake: str) -> str:
        """``flake``, refused (naming the argument) over HTTP when it names a path on
        this host (``.``, ``/x``, ``path:``, ``file:``, ``git+file:``)."""
        if self.root is None and is_local_flake(flake):
            raise ToolError(f"argument 'flake': {flake!r} is a local path; {NO_CHECKOUT}")
        return flake


def is_local_flake(flake: str) -> bool:
    """Whether a flake reference names a path on this host: no scheme (``.``, ``./x``,
    ``/x``) other than a bare registry name (``nixpkgs``), or a file scheme (``path:``,
    ``file:``, ``git+file:``, ...)."""
    ref = flake.split("#", 1)[0]
    scheme = _SCHEME_RE.match(ref)
    if scheme is None:
        return _REGISTRY_RE.match(ref) is None
    return scheme.group(1) == "path" or scheme.group(1).split("+")[-1] == "file"


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
