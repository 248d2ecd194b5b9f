"""SC-001 and SC-002 as an agent sees them: through MCP (the SDK's stdio client against
``vmrunner mcp``), under TCG here.

* SC-001: one ``test_configuration`` call on a cached Debian recipe (goal <= 30 s);
* SC-002: three iterations (failing unit, then the fix, then a changed check), each a
  ``test_configuration`` call, with ``explain_failure`` after a failure and
  ``compare_runs`` after each later attempt (goal <= 3 min).

Usage: ``.venv/bin/python bench/mcp_bench.py`` (uses a fresh state directory and the
shared image cache; the default image must be built, e.g. by ``vmrunner image build``).
Prints the figures; asserts nothing about time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

UNIT = (
    "  - name: {name}\n    content: |\n      [Unit]\n      Description={name}\n"
    "      [Service]\n      Type=oneshot\n      RemainAfterExit=yes\n      ExecStart={cmd}\n"
    "      [Install]\n      WantedBy=multi-user.target\n"
)


def recipe(cmd: str, check: str = "unit_active: app.service") -> str:
    return (
        f"name: bench-mcp\nunits:\n{UNIT.format(name='app.service', cmd=cmd)}checks:\n  - {check}\n"
    )


ATTEMPTS = [
    recipe("/bin/sh -c 'echo app-broken; exit 3'"),
    recipe("/bin/true"),
    recipe("/bin/true", "command: 'systemctl is-active app.service'"),
]


async def timed(
    session: ClientSession, name: str, args: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    start = time.monotonic()
    result = await session.call_tool(name, args)
    took = time.monotonic() - start
    if result.is_error:
        raise SystemExit(f"{name} failed: {[getattr(c, 'text', '') for c in result.content]}")
    return took, dict(result.structured_content or {})


async def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="vmrunner-mcp-bench-"))
    env = {**os.environ, "VMRUNNER_HOME": str(root / "state")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "vmrunner", "mcp", "--dir", str(root)],
                                   env=env, cwd=str(root))  # fmt: skip
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        warm, _ = await timed(
            session, "test_configuration", {"recipe": ATTEMPTS[1], "accel": "tcg"}
        )
        print(f"warm-up (builds the recipe's layers if not cached): {warm:.1f} s")
        one, doc = await timed(
            session, "test_configuration", {"recipe": ATTEMPTS[1], "accel": "tcg"}
        )
        print(
            f"SC-001: one test_configuration on a cached recipe: {one:.1f} s ({doc['status']}; goal <= 30 s)"
        )
        start, previous = time.monotonic(), None
        for n, text in enumerate(ATTEMPTS, 1):
            took, doc = await timed(session, "test_configuration", {"recipe": text, "accel": "tcg"})
            line = f"  iteration {n}: {doc['status']} in {took:.1f} s"
            if doc["status"] != "success":
                t, why = await timed(session, "explain_failure", {"run_id": doc["id"]})
                line += f"; explain_failure {t:.2f} s: {why['summary'][:80]}"
            if previous:
                t, cmp = await timed(
                    session, "compare_runs", {"before": previous, "after": doc["id"]}
                )
                line += f"; compare_runs {t:.2f} s: {cmp['summary'].splitlines()[1:2]}"
            print(line)
            previous = doc["id"]
        total = time.monotonic() - start
        print(f"SC-002: three iterations with a fix in between: {total:.1f} s (goal <= 180 s)")


if __name__ == "__main__":
    asyncio.run(main())
