"""``vmrunner serve`` (the GitHub runner service) and ``vmrunner worker`` (more hosts)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from vmrunner.cli_base import _fail, _services, _settings
from vmrunner.errors import VmrunnerError


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Runs at once in this process's own worker (0: none, only other hosts' "
            "'vmrunner worker'). Default: what this host's CPUs and memory allow.",
        ),
    ] = None,
    grace: Annotated[
        float, typer.Option(help="On SIGTERM, seconds running runs may take before cancelled.")
    ] = 300.0,
) -> None:
    """The GitHub runner service: POST /webhook (signature checked, every delivery kept
    before it is acknowledged), the scheduler that queues the workflows a delivery
    triggers at its commit, a local worker that runs them in VMs, and the reports to
    GitHub (commit statuses with github_token, check runs with a GitHub App), the HTTP
    API and dashboard, and the MCP tools of 'vmrunner mcp' at /mcp (streamable HTTP,
    stateless; bearer tokens: read, or write for the tools that run or cancel things;
    recipes as text, no repository paths). Needs webhook_secret. SIGTERM drains:
    nothing new starts, running runs finish."""
    from vmrunner.services.server import run_server

    if workers is not None and workers < 0:
        raise _fail(VmrunnerError(f"--workers must not be negative, got {workers}"))
    try:
        secret = _settings().webhook_secret_bytes()
        with _services(reap_vms=True) as services:
            asyncio.run(run_server(services, secret, host, port, workers, grace_s=grace))
    except VmrunnerError as exc:
        raise _fail(exc) from exc


def worker(
    capacity: Annotated[
        int | None,
        typer.Option(help="Runs at once. Default: what this host's CPUs and memory allow."),
    ] = None,
    grace: Annotated[
        float, typer.Option(help="On SIGTERM, seconds running runs may take before cancelled.")
    ] = 300.0,
) -> None:
    """Claim queued runs from the shared database (VMRUNNER_DATABASE_URL=postgresql://...)
    and run them in VMs on this host, beside 'vmrunner serve' elsewhere. SIGTERM drains."""
    from vmrunner.services.server import run_worker

    try:
        with _services(reap_vms=True) as services:
            asyncio.run(run_worker(services, capacity, grace_s=grace))
    except VmrunnerError as exc:
        raise _fail(exc) from exc


def serve_background(
    workers: Annotated[int | None, typer.Option("--workers")] = None,
    grace: Annotated[float, typer.Option()] = 300.0,
) -> None:
    """Internal: the background process 'vmrunner serve' starts (scheduler, reports,
    local worker); stdin is a pipe from serve."""
    from vmrunner.services.server import run_background

    try:
        with _services(reap_vms=True) as services:
            asyncio.run(run_background(services, workers, grace))
    except VmrunnerError as exc:
        raise _fail(exc) from exc
