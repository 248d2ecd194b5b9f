"""The MCP server through the SDK's own stdio client, against a real ``vmrunner mcp``
process. No VM here: runs that fail in preflight (an invalid recipe) give real kept
runs to read, explain and compare."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mcp import ClientSession
from mcp.types import CallToolResult
from mcp_client import mcp_session

from conftest import vmrunner
from vmrunner.results import validate_result

TOOLS = {
    "test_configuration", "run_workflow", "exec_command", "get_result", "list_runs",
    "cancel_run", "get_logs", "explain_failure", "predict_command", "related_commands",
    "lessons", "compare_runs",
}  # fmt: skip
BAD_RECIPE = "name: t-bad\nunits: [\n"


def env_for(state: Path) -> dict[str, str]:
    return {**os.environ, "VMRUNNER_HOME": str(state)}


def text(result: CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def call(
    session: ClientSession, schemas: dict[str, Any], name: str, args: dict[str, Any]
) -> CallToolResult:
    """Call tool ``name``; a successful result must carry structured content valid
    against the tool's output schema (checked here as well as by the SDK client)."""
    result = await session.call_tool(name, args)
    if not result.is_error:
        assert result.structured_content is not None, name
        errors = list(Draft202012Validator(schemas[name]).iter_errors(result.structured_content))
        assert errors == [], (name, [e.message for e in errors])
        assert text(result).strip(), f"{name} returned no text for people"
    return result


async def output_schemas(session: ClientSession) -> dict[str, Any]:
    return {t.name: t.output_schema for t in (await session.list_tools()).tools}


def test_tools_are_listed_with_input_and_output_schemas(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with mcp_session(env_for(tmp_path / "state"), tmp_path) as session:
            listed = (await session.list_tools()).tools
            assert {t.name for t in listed} == TOOLS
            for tool in listed:
                assert tool.description and tool.input_schema["type"] == "object"
                assert tool.output_schema is not None and tool.output_schema["type"] == "object"
                Draft202012Validator.check_schema(tool.output_schema)
                Draft202012Validator.check_schema(tool.input_schema)
            by_name = {t.name: t for t in listed}
            props = by_name["test_configuration"].input_schema["properties"]
            assert {"recipe", "path", "flake", "host", "checks", "boot_timeout"} <= set(props)
            assert set(by_name["exec_command"].input_schema["required"]) == {"argv"}
            assert {"mode", "lines"} <= set(by_name["get_logs"].input_schema["properties"])

    asyncio.run(scenario())


BAD_CALLS = [
    ("exec_command", {"argv": []}, "argv"),
    ("exec_command", {}, "argv"),
    ("get_logs", {"run_id": "1", "mode": "bogus"}, "mode"),
    ("get_logs", {"run_id": "1", "lines": 0}, "lines"),
    ("test_configuration", {"recipe": BAD_RECIPE, "boot_timeout": -1}, "boot_timeout"),
    ("test_configuration", {"path": "../../etc/passwd"}, "'path'"),
    ("test_configuration", {"path": "missing.yml"}, "'path'"),
    ("test_configuration", {"flake": "."}, "'host'"),
    ("test_configuration", {"recipe": BAD_RECIPE, "path": "x.yml"}, "exactly one"),
    ("test_configuration", {"recipe": BAD_RECIPE, "compare_with": "999999"}, "compare_with"),
    ("test_configuration", {"recipe": BAD_RECIPE, "accel": "fast"}, "accel"),
    ("list_runs", {"status": "weird"}, "status"),
    ("list_runs", {"limit": 0}, "limit"),
    ("get_result", {"run_id": ""}, "run_id"),
    ("get_result", {"run_id": "999999"}, "999999"),
    ("compare_runs", {"before": "999999", "after": "1"}, "before"),
    ("explain_failure", {"run_id": 12}, "run_id"),
    ("predict_command", {"command": ""}, "command"),
    ("run_workflow", {"path": "/etc"}, "'path'"),
]


def test_bad_arguments_are_tool_errors_naming_the_argument(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with mcp_session(env_for(tmp_path / "state"), tmp_path) as session:
            for name, args, named in BAD_CALLS:
                result = await session.call_tool(name, args)
                assert result.is_error, (name, args, text(result))
                assert named in text(result), (name, args, text(result))
            # the server still serves
            assert not (await session.call_tool("list_runs", {})).is_error

    asyncio.run(scenario())


def test_runs_can_be_read_explained_compared_and_logs_windowed(tmp_path: Path) -> None:
    """Two attempts at an invalid recipe (failing in preflight, no VM), then every
    read-side tool on them; each result validates against its output schema."""

    async def scenario() -> None:
        async with mcp_session(env_for(tmp_path / "state"), tmp_path) as session:
            schemas = await output_schemas(session)
            first = await call(session, schemas, "test_configuration", {"recipe": BAD_RECIPE})
            doc = first.structured_content or {}
            assert validate_result(doc) == []
            assert doc["status"] == "failure" and doc["failed_phase"] == "preflight"
            assert doc["errors"][0]["kind"] == "recipe_invalid" and doc["errors"][0]["line"] == 3
            (tmp_path / "r.yml").write_text(BAD_RECIPE.replace("[", "[]\nbogus: 1"))
            second = await call(session, schemas, "test_configuration",
                                {"path": "r.yml", "compare_with": doc["id"]})  # fmt: skip
            doc2 = second.structured_content or {}
            assert doc2["comparison"]["before"] == doc["id"] and validate_result(doc2) == []
            await _read_side(session, schemas, doc["id"], doc2["id"])

    asyncio.run(scenario())


async def _read_side(session: ClientSession, schemas: dict[str, Any], a: str, b: str) -> None:
    listed = (await call(session, schemas, "list_runs", {"kind": "systest"})).structured_content
    assert [r["id"] for r in (listed or {})["runs"]] == [b, a]
    got = (await call(session, schemas, "get_result", {"run_id": a})).structured_content or {}
    assert got["document"]["id"] == a and got["part"] is None
    part = await call(session, schemas, "get_result", {"run_id": a, "phase": "preflight"})
    assert (part.structured_content or {})["part"]["errors"][0]["kind"] == "recipe_invalid"
    logs = await call(session, schemas, "get_logs", {"run_id": a, "mode": "error", "lines": 5})
    window = logs.structured_content or {}
    lines = window["text"].splitlines()
    assert window["error_line"] == 2 and "preflight: failed" in lines[1], window
    assert (window["first_line"], window["mode"]) == (1, "error")
    tail = (await call(session, schemas, "get_logs", {"run_id": a, "lines": 1})).structured_content
    assert (tail or {})["last_line"] == (tail or {})["total_lines"] and (tail or {})[
        "first_line"
    ] == (tail or {})["total_lines"]
    why = (await call(session, schemas, "explain_failure", {"run_id": a})).structured_content or {}
    assert why["failing"]["phase"] == "preflight" and why["errors"][0]["kind"] == "recipe_invalid"
    assert why["learning"]["occurrences_before"] == 0 and "first time" in why["hint"]
    cmp = (
        await call(session, schemas, "compare_runs", {"before": a, "after": b})
    ).structured_content
    assert (cmp or {})["before"] == a and (cmp or {})["status"]["after"] == "failure"
    cancel = (await call(session, schemas, "cancel_run", {"run_id": a})).structured_content or {}
    assert cancel["ended"] and cancel["run"]["status"] == "failure"
    for name, args in (("lessons", {}), ("predict_command", {"command": "systest preflight r.yml"}),
                       ("related_commands", {"command": "systest preflight r.yml"})):  # fmt: skip
        assert not (await call(session, schemas, name, args)).is_error


def test_runs_compare_cli_prints_text_and_json(tmp_path: Path) -> None:
    env = env_for(tmp_path / "state")
    recipe = tmp_path / "r.yml"
    recipe.write_text(BAD_RECIPE)
    ids = []
    for n in range(2):
        out = tmp_path / f"{n}.json"
        vmrunner(["systest", str(recipe), "--accel", "tcg", "--json", str(out)], env)
        ids.append(json.loads(out.read_text())["id"])
    proc = vmrunner(["runs", "compare", *ids, "--json"], env)
    assert proc.returncode == 0, proc.stderr
    cmp = json.loads(proc.stdout)
    assert (cmp["before"], cmp["after"]) == tuple(ids) and cmp["phases"] == []
    assert vmrunner(["runs", "compare", *ids], env).stdout.decode().startswith(f"run {ids[0]}")
    bad = vmrunner(["runs", "compare", ids[0], "999999"], env)
    assert bad.returncode == 125 and b"after" in bad.stderr


@pytest.mark.parametrize("budget", [4096, 16384])
def test_a_huge_recipe_error_stays_within_the_budget(tmp_path: Path, budget: int) -> None:
    """A recipe whose error drags a long text along: the result is bounded."""
    huge = "name: t-huge\nfiles:\n  - {path: /x, content: '" + "x" * 100_000 + "'}\nbogus: [\n"

    async def scenario() -> None:
        env = env_for(tmp_path / "state")
        async with mcp_session(env, tmp_path, budget) as session:
            schemas = await output_schemas(session)
            res = await call(session, schemas, "test_configuration", {"recipe": huge})
            assert len(json.dumps(res.structured_content)) <= budget
            assert len(text(res)) <= 4096

    asyncio.run(scenario())
