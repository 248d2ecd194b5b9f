"""``vmrunner serve``: the HTTP server (FastAPI on uvicorn) with the webhook endpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from vmrunner.cli_base import _fail, _services, _settings
from vmrunner.errors import VmrunnerError


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve GitHub webhooks (POST /webhook, signature checked, every delivery kept in
    the store before it is acknowledged) and GET /healthz. Needs webhook_secret."""
    import uvicorn

    from vmrunner.api.app import create_app

    try:
        secret = _settings().webhook_secret_bytes()
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    with _services(reap_vms=False) as services:
        app = create_app(services, secret)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
