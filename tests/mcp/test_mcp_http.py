"""The MCP server mounted in a real ``vmrunner serve`` at ``/mcp`` (streamable HTTP,
stateless), through the SDK's own client (``mcp.client.streamable_http``), behind the
API's bearer tokens: the same tools as over stdio; a read token reads, a write tool needs
a write token; no or a bad token is 401; repository paths are refused (no checkout on a
server); a call without ``initialize``; two clients at once; one ``exec_command`` in a
real VM under TCG."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import CallToolResult
from mcp_client import mcp_session

from api.live import ApiServer, sse_events
from vmrunner.mcp.common import is_local_flake
from vmrunner.results import validate_result
from vmrunner.services.tokens import create_token, revoke_token

BAD_RECIPE = "name: t-bad\nunits: [\n"
WRITE_TOOLS = {
    "test_configuration": {"recipe": "name: t-never\n"},
    "run_workflow": {},
    "exec_command": {"argv": ["true"]},
    "cancel_run": {"run_id": "RUN"},
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path_factory.mktemp("mcp-http") / "state")
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def http_session(srv: ApiServer, token: str) -> AsyncIterator[ClientSession]:
    """A client session with ``/mcp`` of ``srv``, sending ``token``."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        create_mcp_http_client(headers=headers) as client,
        streamable_http_client(f"{srv.url}/mcp", http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def text(result: CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def checked(session: ClientSession, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call ``name``; it must succeed with structured content valid against its output
    schema (as listed by this session) and a text for people."""
    schemas = {t.name: t.output_schema for t in (await session.list_tools()).tools}
    result = await session.call_tool(name, args)
    assert not result.is_error, text(result)
    data = result.structured_content
    assert data is not None and text(result).strip(), name
    errors = list(Draft202012Validator(schemas[name]).iter_errors(data))
    assert errors == [], (name, [e.message for e in errors])
    return data


def test_tools_over_http_are_the_stdio_tools(srv: ApiServer, tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        env = {**os.environ, "VMRUNNER_HOME": str(tmp_path / "stdio-state")}
        async with mcp_session(env, tmp_path) as stdio, http_session(srv, srv.read) as http:
            return (await stdio.list_tools()).tools, (await http.list_tools()).tools

    stdio, http = asyncio.run(scenario())
    assert len(http) == 12
    assert [t.model_dump() for t in http] == [t.model_dump() for t in stdio]


def test_a_read_token_reads_runs_and_results(srv: ApiServer) -> None:
    run_id = srv.keep_exec(["echo", "read-me"], lines=30)

    async def scenario() -> None:
        async with http_session(srv, srv.read) as session:
            runs = await checked(session, "list_runs", {"kind": "exec"})
            assert run_id in [r["id"] for r in runs["runs"]]
            got = await checked(session, "get_result", {"run_id": run_id})
            assert got["run"]["id"] == run_id and got["run"]["status"] == "success"
            assert got["document"]["argv"] == ["echo", "read-me"]
            validate_result(got["document"])
            logs = await checked(session, "get_logs", {"run_id": run_id, "lines": 5})
            assert logs["text"].splitlines() == [f"line {n}" for n in range(26, 31)]
            gone = await session.call_tool("get_result", {"run_id": "no-such-run"})
            assert gone.is_error and "no run 'no-such-run'" in text(gone)

    asyncio.run(scenario())


@pytest.mark.parametrize("tool", sorted(WRITE_TOOLS))
def test_a_write_tool_with_a_read_token_is_refused_naming_the_scope(
    srv: ApiServer, tool: str
) -> None:
    running = srv.keep_running(["sleep", "1000"])
    args = {k: (running.id if v == "RUN" else v) for k, v in WRITE_TOOLS[tool].items()}

    async def scenario() -> tuple[CallToolResult, list[str]]:
        async with http_session(srv, srv.read) as session:
            result = await session.call_tool(tool, args)
            runs = (await session.call_tool("list_runs", {"limit": 200})).structured_content
            return result, [r["id"] for r in (runs or {})["runs"]]

    result, ids = asyncio.run(scenario())
    assert result.is_error
    assert "scope 'write'" in text(result) and "has scope 'read'" in text(result)
    assert max(int(i) for i in ids) == int(running.id), "the refused call started a run"
    assert srv.services.get(running.id).status == "running"
    srv.finish(running.id)


def test_a_write_token_passes_the_scope_check(srv: ApiServer) -> None:
    """A write tool with a write token gets past the scope check to the tool itself
    (here it refuses a repository path: no checkout on a server)."""

    async def scenario() -> CallToolResult:
        async with http_session(srv, srv.write) as session:
            return await session.call_tool("test_configuration", {"path": "recipe.yml"})

    result = asyncio.run(scenario())
    assert result.is_error and "scope" not in text(result)
    assert "argument 'path'" in text(result) and "'recipe'" in text(result)


def test_a_recipe_as_text_with_progress_then_explained(srv: ApiServer) -> None:
    """``test_configuration`` with recipe text (invalid: it fails in preflight, no VM)
    sends its progress notifications on the POST's event stream; a read token then
    explains the failure."""
    progress: list[tuple[float, str]] = []

    async def on_progress(value: float, _total: float | None, message: str | None) -> None:
        progress.append((value, message or ""))

    async def scenario() -> tuple[CallToolResult, dict[str, Any]]:
        async with http_session(srv, srv.write) as session:
            result = await session.call_tool(
                "test_configuration", {"recipe": BAD_RECIPE}, progress_callback=on_progress
            )
        run_id = (result.structured_content or {}).get("id")
        async with http_session(srv, srv.read) as session:
            return result, await checked(session, "explain_failure", {"run_id": run_id})

    result, why = asyncio.run(scenario())
    doc = result.structured_content or {}
    assert not result.is_error and validate_result(doc) == []
    assert doc["status"] == "failure" and doc["failed_phase"] == "preflight"
    assert progress and all("preflight" in m for _, m in progress), progress
    assert [v for v, _ in progress] == sorted(v for v, _ in progress)
    assert why["failing"]["phase"] == "preflight" and why["errors"][0]["kind"] == "recipe_invalid"


REFUSED_PATHS = [
    ("test_configuration", {"path": "recipe.yml"}, "path"),
    ("test_configuration", {"flake": ".", "host": "web"}, "flake"),
    ("test_configuration", {"flake": "/srv/flake", "host": "web"}, "flake"),
    ("run_workflow", {}, "path"),
    ("run_workflow", {"path": ".github/workflows/ci.yml"}, "path"),
    ("exec_command", {"argv": ["cat", "/x"], "files": [{"src": "/etc/hostname", "dst": "/x"}]},
     "files.src"),
]  # fmt: skip


def test_repository_paths_are_refused_over_http(srv: ApiServer) -> None:
    async def scenario() -> list[CallToolResult]:
        async with http_session(srv, srv.write) as session:
            return [await session.call_tool(n, a) for n, a, _ in REFUSED_PATHS]

    results = asyncio.run(scenario())
    for (name, _, argument), result in zip(REFUSED_PATHS, results, strict=True):
        assert result.is_error, name
        assert f"argument {argument!r}" in text(result), (name, text(result))
        assert "no checkout of your repository" in text(result)


@pytest.mark.parametrize(
    ("flake", "local"),
    [(".", True), ("./web", True), ("/srv/flake", True), ("~/flake", True), ("web/x", True),
     ("path:/srv/flake", True), ("file:///srv/f.tar", True), ("git+file:///srv/repo", True),
     ("tarball+file:///x.tgz", True), (".#web", True), ("nixpkgs", False),
     ("github:owner/repo", False), ("github:owner/repo#web", False),
     ("git+https://example.org/r.git", False), ("https://example.org/f.tar.gz", False),
     ("file+https://example.org/f.tar", False), ("flake:nixpkgs", False)],
)  # fmt: skip
def test_local_flake_references(flake: str, local: bool) -> None:
    assert is_local_flake(flake) is local


def test_no_token_a_wrong_token_and_a_revoked_token_are_401(srv: ApiServer) -> None:
    revoked = create_token(srv.services, "revoked-mcp", "read")
    revoke_token(srv.services, revoked[0].id)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for header in (None, "Bearer vmr_wrong", f"Bearer {revoked[1]}", f"Basic {srv.read}",
                   "Bearer"):  # fmt: skip
        headers = {"Accept": "application/json, text/event-stream"}
        headers |= {"Authorization": header} if header else {}
        r = httpx.post(f"{srv.url}/mcp", json=body, headers=headers, timeout=30)
        assert r.status_code == 401, header
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["kind"] == "unauthorized" and r.json()["error"]["message"]


def test_a_stateless_call_without_initialize(srv: ApiServer) -> None:
    run_id = srv.keep_exec(["echo", "no-init"])
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "get_result", "arguments": {"run_id": run_id}}}  # fmt: skip
    headers = {"Authorization": f"Bearer {srv.read}",
               "Accept": "application/json, text/event-stream"}  # fmt: skip
    with httpx.stream("POST", f"{srv.url}/mcp", json=body, headers=headers, timeout=60) as r:
        assert r.status_code == 200
        assert "mcp-session-id" not in r.headers
        events = [json.loads(e["data"]) for e in sse_events(r) if e.get("data")]
    answer = next(e for e in events if e.get("id") == 7)
    assert answer["result"]["isError"] is False
    assert answer["result"]["structuredContent"]["run"]["id"] == run_id


def test_two_clients_at_once(srv: ApiServer) -> None:
    ids = [srv.keep_exec(["echo", f"client-{n}"], lines=n + 1) for n in range(2)]

    async def client(token: str, run_id: str) -> list[dict[str, Any]]:
        async with http_session(srv, token) as session:
            return [await checked(session, "get_result", {"run_id": run_id}),
                    await checked(session, "get_logs", {"run_id": run_id})]  # fmt: skip

    async def scenario() -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(client(srv.read, ids[0]), client(srv.write, ids[1])))

    for n, (got, logs) in enumerate(asyncio.run(scenario())):
        assert got["run"]["id"] == ids[n] and got["document"]["argv"] == ["echo", f"client-{n}"]
        assert logs["total_lines"] == n + 1


@pytest.mark.vm
def test_exec_command_over_http_in_a_real_vm(srv: ApiServer, debian_image: Path) -> None:
    """``exec_command`` runs in the serve process itself (as over stdio; no worker)."""

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with http_session(srv, srv.write) as session:
            ran = await checked(session, "exec_command",
                                {"argv": ["sh", "-c", "echo over-http-$((6*7))"], "accel": "tcg"})  # fmt: skip
        async with http_session(srv, srv.read) as session:
            return ran, await checked(session, "get_result", {"run_id": ran["id"]})

    ran, got = asyncio.run(scenario())
    validate_result(ran)
    assert ran["status"] == "success" and ran["exit_code"] == 0 and ran["accel"] == "tcg", ran
    assert "over-http-42" in ran["output_tail"]
    assert got["run"]["status"] == "success" and got["document"]["exit_code"] == 0
