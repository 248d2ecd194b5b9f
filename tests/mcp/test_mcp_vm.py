"""The agent's loop through MCP, end to end under TCG: a real Debian recipe whose unit
fails, tested three times (progress per phase, ``service_failed`` naming the unit), then
``explain_failure`` with the learning hint, then the fix tested through the CLI with
``--compare``; plus one ``exec_command`` and one ``run_workflow``. Five VM boots."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mcp import ClientSession
from mcp.types import CallToolResult
from mcp_client import mcp_session

from conftest import vmrunner

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

UNIT = (
    "  - name: {name}\n    content: |\n      [Unit]\n      Description={name}\n"
    "      [Service]\n      Type=oneshot\n      RemainAfterExit=yes\n      ExecStart={cmd}\n"
    "      [Install]\n      WantedBy=multi-user.target\n"
)


def recipe(broken_cmd: str) -> str:
    return (
        "name: t-mcp\nunits:\n"
        + UNIT.format(name="broken.service", cmd=broken_cmd)
        + UNIT.format(name="fine.service", cmd="/bin/true")
        + "checks:\n  - unit_active: fine.service\n"
    )


FAILING = recipe("/bin/sh -c 'echo broken-marker-42; exit 3'")
FIXED = recipe("/bin/true")
PHASES = ("preflight", "build", "install", "boot", "runtime")


class Checked:
    """Tool calls whose structured output is checked against the tool's output schema."""

    def __init__(self, session: ClientSession, schemas: dict[str, Any]) -> None:
        self.session, self.schemas = session, schemas
        self.progress: list[tuple[float, str]] = []

    async def __call__(self, name: str, **args: Any) -> dict[str, Any]:
        async def on_progress(value: float, _total: float | None, message: str | None) -> None:
            self.progress.append((value, message or ""))

        result: CallToolResult = await self.session.call_tool(
            name, args, progress_callback=on_progress
        )
        assert not result.is_error, [getattr(c, "text", "") for c in result.content]
        data = result.structured_content or {}
        assert list(Draft202012Validator(self.schemas[name]).iter_errors(data)) == []
        return data


def test_an_agent_iterates_on_a_failing_unit_through_mcp(
    vm_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**vm_env, "VMRUNNER_LESSON_MIN": "3"}

    async def scenario() -> list[str]:
        async with mcp_session(env, tmp_path) as session:
            tools = (await session.list_tools()).tools
            call = Checked(session, {t.name: t.output_schema for t in tools})
            ids = []
            for attempt in range(3):
                call.progress.clear()
                doc = await call("test_configuration", recipe=FAILING, accel="tcg")
                ids.append(doc["id"])
                assert doc["status"] == "failure" and doc["failed_phase"] == "runtime"
                [err] = [e for e in doc["errors"] if e["kind"] == "service_failed"]
                assert err["unit"] == "broken.service" and err["phase"] == "runtime"
                if attempt == 0:
                    assert_progress_per_phase(call.progress)
            why = await call("explain_failure", run_id=ids[2])
            assert why["failing"]["phase"] == "runtime"
            assert why["errors"][0]["kind"] == "service_failed"
            assert why["errors"][0]["unit"] == "broken.service"
            assert why["learning"]["occurrences"] == 3 and why["lesson"] is not None
            assert "seen 3 times" in why["hint"] and "a lesson" in why["hint"]
            assert "broken-marker-42" in why["evidence"]
            first = await call("explain_failure", run_id=ids[0])
            assert first["learning"]["occurrences_before"] == 0
            await other_run_tools(call, tmp_path)
            return ids

    ids = asyncio.run(scenario())
    fixed = tmp_path / "t-mcp.yml"
    fixed.write_text(FIXED)
    out = tmp_path / "fixed.json"
    proc = vmrunner(["systest", str(fixed), "--accel", "tcg", "--json", str(out),
                     "--compare", ids[2]], env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout.decode()[-3000:]
    doc = json.loads(out.read_text())
    cmp = doc["comparison"]
    assert {"name": "runtime", "before": "failed", "after": "passed"} in cmp["phases"]
    assert {"name": "broken.service", "before": "failed", "after": "ok"} in cmp["units"]
    assert "service_failed (broken.service)" in cmp["errors"]["gone"]
    assert "runtime failed -> passed" in proc.stdout.decode()
    again = vmrunner(["runs", "compare", ids[2], doc["id"], "--json"], env)
    assert json.loads(again.stdout) == cmp


def assert_progress_per_phase(progress: list[tuple[float, str]]) -> None:
    """A notification as each phase starts and ends, in order, values increasing."""
    values = [v for v, _ in progress]
    assert values == sorted(values) and len(set(values)) == len(values)
    messages = [m for _, m in progress]
    for name in PHASES:
        assert f"phase {name}: started" in messages, messages
    assert any(m.startswith("phase runtime: failed") for m in messages), messages
    starts = [m.split(":")[0] for m in messages if m.endswith("started")]
    assert starts == [f"phase {p}" for p in PHASES]


async def other_run_tools(call: Checked, root: Path) -> None:
    (root / "in.txt").write_text("copied-in\n")
    ran = await call("exec_command", argv=["cat", "/root/in.txt"], accel="tcg",
                     files=[{"src": "in.txt", "dst": "/root/in.txt"}])  # fmt: skip
    assert ran["exit_code"] == 0 and "copied-in" in ran["output_tail"]
    flows = root / ".github" / "workflows"
    flows.mkdir(parents=True)
    (flows / "ci.yml").write_text(
        "on: push\njobs:\n  hello:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo hello-from-workflow\n      - run: exit 4\n"
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(root)]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "ci"]):
        subprocess.run([*git, *args], check=True, capture_output=True, timeout=60)
    call.progress.clear()
    wf = await call("run_workflow", accel="tcg")
    assert wf["status"] == "failure" and wf["jobs"][0]["steps"][1]["exit_code"] == 4
    assert any("step" in m for _, m in call.progress), call.progress
    why = await call("explain_failure", run_id=wf["id"])
    failing = why["failing"]
    assert failing["job"] == "hello" and "exit 4" in f"{failing['step']} {failing['command']}"
