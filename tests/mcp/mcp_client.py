"""An MCP client session against a real ``vmrunner mcp`` process over stdio, through
the SDK's own client (``mcp.client.stdio`` + ``ClientSession``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


@contextlib.asynccontextmanager
async def mcp_session(
    env: dict[str, str], root: Path, max_bytes: int = 16384
) -> AsyncIterator[ClientSession]:
    """A client session with ``python -m vmrunner mcp --dir ROOT`` (its own process,
    reaped when the block ends)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "vmrunner", "mcp", "--dir", str(root), "--max-bytes", str(max_bytes)],
        env=env, cwd=str(root),
    )  # fmt: skip
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session
